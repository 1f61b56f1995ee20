"""The offline extractor's sentence shapes: each turns one first-person statement (whitespace collapsed,
filler removed) into a short third-person memory with its kind and confidence, or refuses it."""

from __future__ import annotations

import re
from typing import Callable

from gateway.extraction.rewrite import obj, subject, third_person

Found = tuple[str, str, float]
Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], Found | None]]

_ING = {"using": "use", "eating": "eat", "drinking": "drink", "working": "work", "living": "live", "smoking": "smoke", "playing": "play", "driving": "drive"}
NOT_STATE = (
    "not|going|gonna|trying|looking|wondering|curious|sure|just|so|very|really|here|back|done|ready|sorry|glad|happy|afraid|thinking|"
    "asking|confused|stuck|having|getting|feeling|working|using|planning|about|on|in|at|still|tired|hungry|busy|fine|ok|okay|good|great|"
    "well|bored|new|interested|excited|testing|writing|building|reading|trying|migrating|moving|switching|based|able|unable|aware"
)
# "My code is broken", "my question is...": about the task at hand, not the user.
TRANSIENT = frozenset(
    "question questions problem issue code error errors bug point guess bad pleasure function script query test tests build program output "
    "result results answer request data file files class method list table repo dataset dataframe project snippet loop array string "
    "variable column row endpoint app page server site website preference segfault crash crashes exception exceptions warning warnings "
    "traceback stacktrace".split()
)
# People whose own tastes and plans are theirs, not the user's ("my friend likes Vue").
OTHERS = frozenset("friend friends coworker coworkers co-worker colleague colleagues roommate roommates neighbor neighbour neighbors neighbours "
                   "boss classmate classmates client clients customer customers".split())
_COUNT = r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|\d+)"
# Family, pets and home are the user's own, even when said with "we" ("we have three kids now").
_HOUSEHOLD = re.compile(r"\b(?:kids?|children|child|sons?|daughters?|twins|baby|babies|dogs?|cats?|pets?|puppy|kitten|house|home|apartment|flat|car)\b", re.I)


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


def household_or_team(word: str, value: str) -> str:
    """"we have three kids" is the user's household; "we use Slack" is the user's team."""
    return "User" if _HOUSEHOLD.search(value) else subject(word)


def _attribute(m: re.Match[str]) -> Found | None:
    attribute = obj(m["a"])
    value = obj(m["x"])
    words = attribute.lower().replace("'s", "").split()
    personal = len(words) > 1 and words[-2] in ("zip", "postal", "post", "area", "country", "door", "gate", "dress")
    if (words[-1] in TRANSIENT and not personal) or words[0] in OTHERS:
        return None
    owner = "User's team's" if m["s"].lower() == "our" and not _HOUSEHOLD.search(attribute) else "User's"
    kind = "preference" if re.search(r"favou?rite|preferred", attribute, re.I) else "goal" if re.search(r"goal|plan|aim", attribute, re.I) else "fact"
    return f"{owner} {attribute} {m['verb'].lower()} {value}", kind, 0.9


def _owned(m: re.Match[str]) -> Found | None:
    """"My daughter Emma turns 7 on March 3", "my mom lives in Manila": a fact about the user's own people and things."""
    if m["a"].lower().split()[0] in OTHERS:
        return None
    owner = "User's team's" if m["s"].lower() == "our" and not _HOUSEHOLD.search(m["a"]) else "User's"
    return f"{owner} {obj(m['a'])} {m['v'].lower()} {obj(m['x'])}", "fact", 0.8


def _favourite(m: re.Match[str]) -> Found:
    return f"User's {m['a'].lower()} is {obj(m['x'])}", "preference", 0.85


# Rules read one statement with its whitespace collapsed: a single space is all they match, so none
# can try each split of a run of whitespace. The first rule that matches decides.
RULES: list[Rule] = [
    (re.compile(r"^(?:I'm|I am) (?P<x>[A-Z][a-z]+)$"), lambda m: (f"User's name is {m['x']}", "fact", 0.8)),
    (_r(r"^(?:my name is|my name's|i'm called|i am called) (?P<x>[\w'-]+(?: [A-Z][\w'-]*){0,2})$"), lambda m: (f"User's name is {m['x']}", "fact", 0.9)),
    (_r(r"^(?:please )?(?:call me|i go by|you can call me) (?P<x>[\w'-]+(?: [A-Z][\w'-]*)?)$"), lambda m: (f"User goes by {m['x']}", "preference", 0.9)),
    (_r(r"^(?P<s>i|we) (?:no longer|don't|do not|dont) (?P<v>[a-z]+) (?P<x>.+?) (?:anymore|any more)$"),
     lambda m: (f"{subject(m['s'])} no longer {third_person(m['v'])} {obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am) not (?P<x>.+?) (?:anymore|any more)$"), lambda m: (f"{subject(m['s'])} is no longer {obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we) no longer (?P<v>[a-z]+) (?P<x>.+)$"), lambda m: (f"{subject(m['s'])} no longer {third_person(m['v'])} {obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we)(?:'ve| have)? (?:stopped|quit|gave up|given up) (?P<v>[a-z]+ing) (?P<x>.+)$"),
     lambda m: (f"{subject(m['s'])} no longer {third_person(_ING.get(m['v'].lower(), m['v'][:-3]))} {obj(m['x'])}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'ve| have)? (?:quit|gave up|given up) (?P<x>smoking|drinking|alcohol|sugar|caffeine|coffee|meat|social media)$"),
     lambda m: (f"{subject(m['s'])} gave up {m['x'].lower()}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we) used to (?P<v>[a-z]+) (?P<x>.+)$"), lambda m: (f"{subject(m['s'])} no longer {third_person(m['v'])} {obj(m['x'])}", "fact", 0.7)),
    # Changes: "I switched from VS Code to Neovim", "we dropped Jenkins for GitHub Actions".
    (_r(r"^(?P<s>i|we|the team|our team)(?:'ve| have)? (?:switched|moved|migrated|changed|went) (?P<w>(?:(?:our|my|the) [\w-]+ )?)from (?P<y>.+?) to (?P<x>.+)$"),
     lambda m: (f"{subject(m['s'])} switched {obj(m['w'])}{' ' if m['w'] else ''}from {obj(m['y'])} to {obj(m['x'])}".replace("  ", " "), "fact", 0.85)),
    (_r(r"^(?P<s>i|we|the team|our team)(?:'ve| have)? (?:dropped|ditched|abandoned|left) (?P<y>.+?) (?:for|in favou?r of) (?P<x>.+)$"),
     lambda m: (f"{subject(m['s'])} switched from {obj(m['y'])} to {obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we|the team|our team)(?:'ve| have)? replaced (?P<y>.+?) with (?P<x>.+)$"),
     lambda m: (f"{subject(m['s'])} switched from {obj(m['y'])} to {obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we|the team|our team)(?:'ve| have)? (?:migrated|moved) (?:off|away from) (?P<y>.+)$"),
     lambda m: (f"{subject(m['s'])} no longer uses {obj(m['y'])}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'d| would)? (?:(?:now|still|really|definitely|generally|usually|much|strongly|also|always) )*prefer (?P<x>.+)$"),
     lambda m: (f"{subject(m['s'])} prefers {obj(m['x'])}", "preference", 0.9)),
    (_r(r"^(?P<s>i|we)(?:'d| would) rather (?:use )?(?P<x>.+)$"), lambda m: (f"{subject(m['s'])} prefers {obj(m['x'])}", "preference", 0.8)),
    (_r(r"^i (?:really |also )?(?:love|like|adore|enjoy) (?:it )?when\b"), lambda m: None),  # an event, or sarcasm: not a taste
    (_r(r"^i (?:really |also )?(?P<v>hate|dislike|can't stand|cannot stand|don't like|do not like|avoid) (?P<x>.+)$"),
     lambda m: (f"User {'avoids' if m['v'].lower() == 'avoid' else 'dislikes'} {obj(m['x'])}", "preference", 0.85)),
    (_r(r"^i(?:'m| am) not (?:a|really a|much of a|big on|a big) ?fan of (?P<x>.+)$"), lambda m: (f"User dislikes {obj(m['x'])}", "preference", 0.8)),
    (_r(r"^i(?:'m| am) (?:a )?(?:huge |big |massive )?fan of (?P<x>.+)$"), lambda m: (f"User is a fan of {obj(m['x'])}", "preference", 0.8)),
    (_r(r"^i (?:want|need|like|prefer) (?:(?:my|the|your) )?(?P<x>(?:answers|replies|responses|explanations)\b.+)$"),
     lambda m: (f"User wants {obj(m['x'])}", "preference", 0.85)),
    (_r(r"^i (?:really |also )?(?P<v>like|love|enjoy|adore) (?P<x>.+)$"), lambda m: (f"User {third_person(m['v'])} {obj(m['x'])}", "preference", 0.8)),
    (_r(r"^(?P<x>[\w' -]+?) (?:is|are) my (?P<a>favou?rite(?: [\w-]+)?|thing)$"), _favourite),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am)? (?:(?:now|currently|still) )?(?:live|living|reside|residing|(?:am |are )?based|located) (?:in|near|outside|at) (?P<x>.+)$"),
     lambda m: (f"{subject(m['s']) if m['s'].lower() == 'i' else 'User'} lives in {obj(m['x'])}", "fact", 0.9)),
    (_r(r"^(?P<s>i|we|the team|our team)(?:'ve| have)? (?:just |recently |finally )?(?:moved|relocated) (?:back )?to (?P<x>.+)$"), lambda m: _moved(m)),
    (_r(r"^i(?:'m| am)? (?:(?:now|currently) )?work(?:ing)? (?P<p>at|for|as) (?P<x>.+)$"), lambda m: (f"User works {m['p'].lower()} {obj(m['x'])}", "fact", 0.9)),
    (_r(r"^i(?:'m| am) (?:now )?at (?P<x>(?-i:[A-Z])[\w&.-]*(?: (?-i:[A-Z])[\w&.-]*)?)$"), lambda m: (f"User works at {m['x']}", "fact", 0.75)),
    (_r(r"^i(?:'ve| have)? (?:just )?(?:joined|started (?:a new job |working )?at) (?P<x>(?-i:[A-Z])[\w&.-]*(?: (?-i:[A-Z])[\w&.-]*)*)(?P<t> .+)?$"),
     lambda m: (f"User works at {m['x']}", "fact", 0.8)),
    (_r(r"^(?P<s>my|our) (?P<a>(?:[\w'-]+ ){0,5}?[\w'-]+) (?P<verb>is|are|was) (?P<x>.+)$"), _attribute),
    (_r(r"^(?P<s>my|our) (?P<a>(?:[\w'-]+ ){0,3}?[\w'-]+) (?:just )?(?P<v>turns|turned|started|joined|began|lives|works|goes|go|runs|run|ends|expires|starts|finishes|"
        r"comes|moved|graduated|retired|passed|has|have|weighs|costs|takes|leaves|arrives|runs out|ends in|is turning|is getting|are visiting|is visiting) (?P<x>.+)$"),
     _owned),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am) (?:(?:currently|now|slowly|finally) )?(?P<v>migrating|moving|switching|transitioning|upgrading) (?P<x>(?:from|to|over|our|everything)\b.+)$"),
     lambda m: (f"{subject(m['s'])} is {m['v'].lower()} {obj(m['x'])}", "decision", 0.85)),
    (_r(r"^(?P<s>i|we)(?:'ve| have)? (?:finally )?(?:decided|agreed|chosen|chose) (?P<x>(?:to|on) .+)$"),
     lambda m: (f"{subject(m['s'])} decided {obj(m['x'])}", "decision", 0.85)),
    (_r(r"^(?P<s>i|we)(?:'re| are|'m| am|'ll| will) going with (?P<x>.+)$"), lambda m: (f"{subject(m['s'])} chose {obj(m['x'])}", "decision", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'re| are|'m| am) (?:planning (?P<on>on|to)|going to|gonna|hoping to|aiming to) (?P<x>(?!be\b|ask\b|need\b|have\b|try\b|get\b).+)$"),
     lambda m: (f"{subject(m['s'])} plans {(m['on'] or 'to').lower()} {obj(m['x'])}", "goal", 0.7)),
    (_r(r"^(?P<s>i|we) (?:plan|intend) to (?P<x>.+)$"), lambda m: (f"{subject(m['s'])} plans to {obj(m['x'])}", "goal", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am) (?:(?:now|currently|mostly|mainly|also) )?using (?P<x>.+)$"), lambda m: (f"{subject(m['s'])} uses {obj(m['x'])}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we) (?:(?:now|currently|mostly|mainly|also|only) )?use (?P<x>.+)$"), lambda m: (f"{subject(m['s'])} uses {obj(m['x'])}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'re| are|'m| am) (?:(?:now|currently|mostly|all|also) )?on (?P<x>(?:a |an )?(?-i:[A-Z])[\w.+-]*(?: (?-i:[A-Z0-9])[\w.+-]*){0,3})$"),
     lambda m: (f"{subject(m['s'])} uses {obj(m['x'])}", "fact", 0.75)),
    (_r(r"^i(?:'m| am) (?:(?:also|now|still|strictly|currently) )?(?P<x>(?:a|an) .+)$"), lambda m: (f"User is {obj(m['x'])}", "fact", 0.85)),
    (_r(rf"^i(?:'m| am) (?:(?:also|now|still|strictly|currently) )?(?P<x>(?!(?:{NOT_STATE})\b)[\w-]+(?: (?:to|of|with|from) [\w' -]+)?)$"),
     lambda m: (f"User is {obj(m['x'])}", "fact", 0.8)),
    (_r(rf"^(?P<s>i|we)(?: have| have got|'ve got|'ve) (?P<x>{_COUNT} (?!question|problem|issue|bug|error|doubt|quick|few questions)\b.+)$"),
     lambda m: (f"{household_or_team(m['s'], m['x'])} has {obj(m['x'])}", "fact", 0.75)),
    (_r(r"^i speak (?P<x>.+)$"), lambda m: (f"User speaks {obj(m['x'])}", "fact", 0.85)),
    (_r(r"^i (?P<f>always|usually|never|often|typically|mostly) (?P<v>[a-z]+) (?P<x>.+)$"),
     lambda m: (f"User {m['f'].lower()} {third_person(m['v'])} {obj(m['x'])}", "preference", 0.75)),
]

# Things one moves a team to, not a home to: "the team moved to Teams" is a change of tool.
_TOOLISH = re.compile(r"^(?:[A-Z][\w.+#-]*[A-Z0-9][\w.+#-]*|GitHub|GitLab|Teams|Slack|Notion|Linear|Jira|Discord|Zoom|Kubernetes|Postgres\w*|Azure|Google \w+)\b")


def _moved(m: re.Match[str]) -> Found:
    place = obj(m["x"])
    if _TOOLISH.match(place):
        return f"{subject(m['s'])} switched to {place}", "fact", 0.8
    return f"User moved to {place}", "fact", 0.85
