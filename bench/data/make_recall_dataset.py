"""Generate bench/data/recall_dataset.json: multi-session conversations with facts stated in passing, and
paraphrased questions whose gold answer is the user turn that stated the fact. Deterministic (seeded).

    python bench/data/make_recall_dataset.py

Each user has several sessions of everyday chatter; a handful of their turns mention a personal fact
inside a longer sentence about something else. Questions ask for the fact in other words (some share
a distinctive word with the turn, many share none), and the user's other turns are the distractors.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240611
USERS = 48
SESSIONS = 6
TURNS_PER_SESSION = 12
FACTS_PER_USER = 8

# (slot values, turns stating the fact in passing, paraphrased questions)
FACTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "pet": (["Biscuit", "Pepper", "Mochi", "Rufus", "Luna", "Ziggy"],
            ["Sorry for the slow reply, {v} my beagle decided the sofa cushion was dinner.",
             "Walking {v} (my dog) took forever today because of the rain, anyway, about that recipe..."],
            ["What is the name of my pet?", "What did I call my puppy?"]),
    "city": (["Porto", "Tallinn", "Valencia", "Leeds", "Kraków", "Ghent"],
             ["Ever since we relocated to {v} last spring, my commute is a short tram ride.",
              "The light here in {v} is lovely in the evenings, which helps after long meetings."],
             ["Which town do I live in now?", "Where did I move to?"]),
    "job": (["a pediatric nurse", "a data engineer", "a high-school chemistry teacher", "a structural engineer", "a UX researcher", "an air-traffic controller"],
            ["Twelve-hour shifts as {v} leave me wiped, so quick dinners are my thing.",
             "Working as {v} means my calendar is chaos, can you keep answers short?"],
            ["What do I do for a living?", "What is my profession?"]),
    "allergy": (["peanuts", "shellfish", "penicillin", "sesame", "cat dander", "latex"],
                ["Careful with suggestions, I react badly to {v}, ended up in the ER once.",
                 "My doctor reminded me again that {v} is off limits for me, annoying but fine."],
                ["Is there anything I'm allergic to?", "What should I avoid for medical reasons?"]),
    "car": (["a 2012 Volvo estate", "an old Mazda Miata", "a Tesla Model 3", "a battered Ford Transit", "a Fiat Panda", "a Subaru Outback"],
            ["The mechanic said {v} needs new brakes before the road trip.",
             "Parking {v} in the city centre costs a fortune these days."],
            ["What vehicle do I own?", "What kind of car do I drive?"]),
    "sport": (["bouldering", "rowing", "trail running", "fencing", "water polo", "ultimate frisbee"],
              ["My shoulders are sore from {v} on Tuesday, so typing is slow.",
               "I skipped {v} practice this week to finish the report."],
              ["Which sport do I practise?", "How do I stay active?"]),
    "partner": (["Priya", "Tomasz", "Elena", "Marcus", "Aiko", "Dara"],
                ["{v}, my wife, thinks I spend too long on these spreadsheets.",
                 "Planning a surprise for my husband {v}'s birthday, need ideas later."],
                ["What is my spouse called?", "Who am I married to?"]),
    "diet": (["vegetarian", "vegan", "pescatarian", "gluten-free", "keto", "halal"],
             ["Since going {v} two years ago, restaurant menus take me ages to read.",
              "Meal prep is easier now that I'm strictly {v}, mostly."],
             ["Do I follow any particular way of eating?", "What are my food restrictions?"]),
    "language": (["Portuguese", "Japanese", "Finnish", "Swahili", "Korean", "Dutch"],
                 ["My {v} evening class ran late, the subjunctive is killing me.",
                  "Duolingo keeps nagging me about my {v} streak."],
                 ["Which foreign language am I learning?", "What tongue am I studying?"]),
    "instrument": (["cello", "banjo", "bass guitar", "trumpet", "harmonica", "piano"],
                   ["Neighbours complained about my {v} practice again last night.",
                    "I finally restrung my {v} before the weekend gig."],
                   ["What instrument do I play?", "Which musical instrument do I practise?"]),
    "kids": (["two daughters", "a toddler son", "three boys", "a teenage daughter", "twin girls", "a newborn son"],
             ["School pickup with {v} eats my whole afternoon.",
              "Bedtime with {v} took two hours, so I'm replying late."],
             ["How many children do I have?", "Tell me about my family's kids."]),
    "birthday": (["March 3rd", "July 19th", "October 30th", "January 11th", "May 25th", "December 2nd"],
                 ["My birthday is {v}, so the conference clashes with it this year.",
                  "Turning another year older on {v}, please no cake emoji."],
                 ["When was I born?", "What day do I celebrate getting older?"]),
    "coffee": (["a flat white with oat milk", "black filter coffee", "a double espresso", "green tea, no coffee at all", "a cortado", "iced americano"],
               ["Ordered {v} as usual and sat down to write this.",
                "Nothing happens before {v} in the morning."],
               ["What's my usual morning drink?", "How do I take my caffeine?"]),
    "editor": (["Neovim", "Emacs", "VS Code", "JetBrains Rider", "Sublime Text", "Helix"],
               ["I tried switching away from {v} but my muscle memory refused.",
                "My {v} config is a mess after the plugin update."],
               ["Which text editor do I code in?", "What IDE do I use?"]),
    "team": (["the payments team", "the platform team", "the mobile team", "the search team", "the billing squad", "the data platform group"],
             ["Standup with {v} ran 40 minutes, again.",
              "Now that I moved to {v}, on-call is every third week."],
             ["Which group do I work in at my company?", "What department am I part of?"]),
    "cloud": (["AWS", "Google Cloud", "Azure", "Hetzner", "DigitalOcean", "Oracle Cloud"],
              ["Our whole stack runs on {v}, and the bill is scary.",
               "Migrating the last services onto {v} this quarter."],
              ["Which hosting provider does my company use?", "Where is our infrastructure hosted?"]),
    "hometown": (["Cork", "Bilbao", "Gdańsk", "Perth", "Mombasa", "Quebec City"],
                 ["Growing up in {v} means I judge every seafood place harshly.",
                  "My parents still live back in {v}, I visit at Christmas."],
                 ["Where did I grow up?", "What's the place I'm originally from?"]),
    "book": (["Middlemarch", "The Left Hand of Darkness", "Dune", "Piranesi", "Anna Karenina", "The Remains of the Day"],
             ["Rereading {v} on the train, still my all-time favourite novel.",
              "Nothing beats {v}, I've gifted it to four friends."],
             ["What is my favourite novel?", "Which book do I love most?"]),
    "fear": (["flying", "deep water", "spiders", "heights", "public speaking", "needles"],
             ["The trip sounds fun but I'm terrified of {v}, so let's plan around that.",
              "Honestly {v} gives me panic attacks, I avoid it when I can."],
             ["What am I scared of?", "Is there a phobia I have?"]),
    "holiday": (["Iceland", "Vietnam", "Patagonia", "the Amalfi coast", "Japan", "Morocco"],
                ["Booked flights to {v} for August, first real break in years.",
                 "Still dreaming about our trip to {v} last autumn."],
                ["Where am I going on vacation?", "What destination did I travel to or plan to visit?"]),
}

FILLER = [
    "Can you help me rewrite this email so it sounds less passive-aggressive?",
    "What's a good way to structure a weekly team update?",
    "Explain the difference between a mutex and a semaphore like I'm five.",
    "Give me three dinner ideas that take under twenty minutes.",
    "How do I convert a pandas dataframe column to datetime?",
    "Any tips for sleeping better when it's really hot at night?",
    "Summarise the main arguments for and against remote work.",
    "What's the etiquette for tipping at a hairdresser?",
    "Write a haiku about Monday mornings.",
    "How long should I boil an egg for a runny yolk?",
    "Can you suggest a name for a book club?",
    "What are some good stretches after sitting all day?",
    "Help me plan a budget for a weekend trip.",
    "Why does my sourdough come out so dense?",
    "Draft a polite message declining a meeting invitation.",
    "What's the best way to learn keyboard shortcuts quickly?",
    "Compare renting versus buying a flat in simple terms.",
    "How do I get red wine out of a carpet?",
    "Recommend a podcast about history.",
    "What's a fun team-building activity that isn't cringe?",
    "How do I politely tell a colleague they talk too much in meetings?",
    "Explain how compound interest works with an example.",
    "Give me a packing list for a rainy city break.",
    "What should I ask in a one-on-one with my manager?",
    "Suggest a birthday gift for a coworker I barely know.",
    "Is it worth buying an air fryer?",
    "How do I fix a squeaky door hinge?",
    "Make this paragraph more concise please.",
    "What's a good stretching routine before running?",
    "Translate 'where is the train station' into a few languages.",
    "What's the difference between baking soda and baking powder?",
    "How can I stop procrastinating on boring tasks?",
    "Give me a SQL query to find duplicate rows.",
    "Write a short toast for a friend's wedding.",
    "What are good houseplants for low light?",
    "How do I make my car last longer?",
    "What's a healthy snack for long meetings?",
    "Help me name a new internal tool at work.",
    "Explain what a hash map is.",
    "What are the rules of pétanque?",
]
# Chatter that brushes against the fact topics, so keyword overlap alone is not enough.
NEAR_MISSES = [
    "My neighbour's dog barks all night, any advice on what to say to them?",
    "What's the best car for a family, in general terms?",
    "Do people still learn Latin at school?",
    "Which sport burns the most calories per hour?",
    "Is it weird to drink coffee after dinner?",
    "What are the most common food allergies in children?",
    "Which city has the best public transport in Europe?",
    "What instrument is easiest for adults to pick up?",
    "Recommend a novel for a long flight.",
    "How do cloud providers price egress traffic?",
    "What makes a good team lead?",
    "Any ideas for a kid's birthday party theme?",
    "What's a good editor for writing markdown notes?",
    "How do people get over a fear of dentists?",
    "What are cheap holiday destinations in winter?",
    "Is a vegetarian diet healthy for teenagers?",
]


# Follow-ups that reuse a word of the turn that stated the fact (ECHOES[kind][i] goes with statement i),
# as real questions often do, next to the pure paraphrases above.
ECHOES: dict[str, list[str]] = {
    "pet": ["What's my beagle called?", "What's the name of the dog I walk?"],
    "city": ["Which city did we relocate to?", "Which place has the lovely evening light I mentioned?"],
    "job": ["What job gives me twelve-hour shifts?", "What am I working as?"],
    "allergy": ["What do I react badly to?", "What did my doctor say is off limits?"],
    "car": ["Which car needs new brakes?", "What am I parking in the city centre?"],
    "sport": ["What made my shoulders sore?", "What practice did I skip this week?"],
    "partner": ["What's my wife's name?", "Whose birthday surprise am I planning?"],
    "diet": ["What diet did I start two years ago?", "What makes my meal prep easier?"],
    "language": ["What's my evening class about?", "Which language streak does Duolingo nag me about?"],
    "instrument": ["What do the neighbours complain about me practising?", "What did I restring before the gig?"],
    "kids": ["Who do I pick up from school?", "Who takes two hours at bedtime?"],
    "birthday": ["When is my birthday?", "On what date do I turn a year older?"],
    "coffee": ["What do I usually order?", "What has to happen before anything else in my morning?"],
    "editor": ["What editor does my muscle memory prefer?", "Which editor config did the plugin update break?"],
    "team": ["Which team's standup runs long?", "Which team did I move to?"],
    "cloud": ["Which cloud runs our stack?", "Where are we migrating services this quarter?"],
    "hometown": ["Where did I grow up judging seafood?", "Where do my parents live?"],
    "book": ["What novel am I rereading on the train?", "Which book have I gifted to friends?"],
    "fear": ["What am I terrified of?", "What gives me panic attacks?"],
    "holiday": ["Where did I book flights to?", "Where was our trip last autumn?"],
}


def build(seed: int = SEED) -> dict:
    rng = random.Random(seed)
    users = []
    for u in range(USERS):
        user = f"user{u:03d}"
        kinds = rng.sample(sorted(FACTS), FACTS_PER_USER)
        total = SESSIONS * TURNS_PER_SESSION
        slots = rng.sample(range(total), FACTS_PER_USER)  # where in the history each fact is said
        fact_at = dict(zip(slots, kinds))
        turns, questions = [], []
        for t in range(total):
            session = t // TURNS_PER_SESSION
            turn_id = f"{user}-s{session}-t{t % TURNS_PER_SESSION}"
            if t in fact_at:
                kind = fact_at[t]
                values, statements, asks = FACTS[kind]
                value = rng.choice(values)
                variant = rng.randrange(len(statements))
                turns.append({"id": turn_id, "session": session, "text": statements[variant].format(v=value)})
                lexical = rng.random() < 0.5
                question = ECHOES[kind][variant] if lexical else rng.choice(asks)
                questions.append({"user": user, "question": question, "gold": [turn_id], "kind": kind, "lexical": lexical})
            else:
                pool = NEAR_MISSES if rng.random() < 0.3 else FILLER
                turns.append({"id": turn_id, "session": session, "text": rng.choice(pool)})
        users.append({"user": user, "turns": turns, "questions": questions})
    return {"seed": seed, "users": users}


def main() -> None:
    out = Path(__file__).with_name("recall_dataset.json")
    data = build()
    users = ",\n".join(json.dumps(u, ensure_ascii=False) for u in data["users"])  # one user a line: small, diffable
    out.write_text(f'{{"seed": {data["seed"]}, "users": [\n{users}\n]}}\n')
    n_q = sum(len(u["questions"]) for u in data["users"])
    n_t = sum(len(u["turns"]) for u in data["users"])
    print(f"wrote {out}: {len(data['users'])} users, {n_t} turns, {n_q} questions")


if __name__ == "__main__":
    main()
