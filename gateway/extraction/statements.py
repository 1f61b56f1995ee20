"""Text rules for reconciling third-person memories: what counts as the same statement, and which
"slot" a statement fills (so "User lives in Paris" replaces "User lives in Berlin")."""

from __future__ import annotations

import re

from gateway.extraction.topics import topic_slots

# Words that change the tone of a statement, not its content: "User really prefers X" restates X.
_FILLER = frozenset(
    "a an the really definitely strongly still now also always very much quite generally usually currently actually just "
    "truly totally absolutely so".split()
)
# Unicode-aware: "Москве" and "Токио" are words too, or statements in other scripts would look alike.
_WORD = re.compile(r"[^\W_](?:[^\W_]|[+#.\-])*")
_SUBJECT = r"(?P<s>(?:the )?user(?:'s team)?)"


def words(text: str) -> list[str]:
    return [w.rstrip(".") for w in _WORD.findall(text.lower()) if w.rstrip(".") not in _FILLER]


def normalised(text: str) -> str:
    """Equal for restatements that differ only in case, punctuation and filler words."""
    return " ".join(words(text))


def adds_nothing(new: str, old: str) -> bool:
    """True when every content word of `new` is already in `old`."""
    return set(words(new)) <= set(words(old))


_SLOTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^{_SUBJECT}'s (?P<a>name) is\b"), "name"),
    (re.compile(rf"^{_SUBJECT} goes by\b"), "name"),
    (re.compile(rf"^{_SUBJECT} is (?:migrating|moving|switching|transitioning)\b"), "migrating"),
    (re.compile(rf"^{_SUBJECT}'s (?P<a>[\w' -]+?) (?:is|are)\b(?! \w+ing\b)"), "attr"),
    (re.compile(rf"^{_SUBJECT} (?:now )?(?:lives|is based|resides|is located|moved|relocated) (?:in|to|near)\b"), "lives_in"),
    (re.compile(rf"^{_SUBJECT} (?:now )?(?:works (?P<p>at|for)|joined|is at)\b"), "works_at"),
    (re.compile(rf"^{_SUBJECT} (?:now )?works as\b"), "works_as"),
    (re.compile(rf"^{_SUBJECT} (?:now |still )?prefers? .+? (?P<q>for|when|as|during|in) (?P<z>.+)$"), "prefers_for"),
    (re.compile(rf"^{_SUBJECT} (?:now |still )?prefers? (?P<x>.+?) (?:over|to|than|instead of|rather than) (?P<y>.+)$"), "prefers_pair"),
]
_NEGATION = re.compile(rf"^{_SUBJECT} (?:no longer|does not|doesn't|stopped|quit) (?P<v>[a-z]+) (?P<x>.+)$")
# "User is not allergic to penicillin" against "User is allergic to penicillin": one slot, two values.
_IS = re.compile(rf"^{_SUBJECT} is (?:(?:not|no longer) )?(?P<x>.+)$")
# "User switched from VS Code to Neovim": whatever the team or the user used before is gone.
_SWITCHED = re.compile(rf"^{_SUBJECT} switched (?:[\w' -]+ )?from (?P<x>.+?) to .+$")
# "User prefers Pulumi over Terraform": what was preferred before ("Terraform over CloudFormation") is not any more.
_PAIR = re.compile(rf"^{_SUBJECT} (?:now |still )?prefers? (?P<x>.+?) (?:over|to|than|instead of|rather than) (?P<y>.+)$")
_POSITIVE = re.compile(rf"^{_SUBJECT} (?:now )?(?P<v>uses|likes|loves|eats|drinks|plays|prefers|works|enjoys|owns|drives|is using|uses) (?P<x>.+)$")


def slot(text: str) -> tuple[str, ...] | None:
    """The slot a statement fills, or None when it fills none (then it never replaces another)."""
    t = " ".join(text.lower().split()).rstrip(".")
    for pattern, name in _SLOTS:
        m = pattern.match(t)
        if m is None:
            continue
        subject = m["s"].removeprefix("the ")
        if name == "attr":
            return (subject, "attr", m["a"].strip())
        if name == "prefers_for":
            return (subject, "prefers", m["q"], normalised(m["z"]))
        if name == "prefers_pair":
            return (subject, "prefers", "pair", *sorted((normalised(m["x"]), normalised(m["y"]))))
        return (subject, name)
    negation = _NEGATION.match(t)
    if negation:
        return (negation["s"].removeprefix("the "), "does", _stem(negation["v"]), normalised(negation["x"]))
    positive = _POSITIVE.match(t)
    if positive and positive["v"] != "prefers":
        return (positive["s"].removeprefix("the "), "does", _stem(positive["v"]), normalised(positive["x"]))
    being = _IS.match(t)
    if being:
        return (being["s"].removeprefix("the "), "is", normalised(being["x"]))
    return None


def _stem(verb: str) -> str:
    verb = verb.removeprefix("is ")
    if verb.endswith("ing"):
        return verb[:-3]
    return verb[:-2] if verb.endswith(("shes", "ches", "xes")) else verb[:-1] if verb.endswith("s") else verb


def negated_object(text: str) -> tuple[str, str] | None:
    """("user", "slack") for "User no longer uses Slack" or "User's team switched from Slack to Teams":
    the subject and what they gave up (a team's tool is its user's too)."""
    t = " ".join(text.lower().split()).rstrip(".")
    switched = _SWITCHED.match(t)
    if switched:
        return ("user", normalised(switched["x"]))
    m = _NEGATION.match(t)
    return (m["s"].removeprefix("the "), normalised(m["x"])) if m else None


def _given_up_preference(new: str, old: str) -> bool:
    """True for "User prefers Pulumi over Terraform" after "User prefers Terraform over CloudFormation"
    (and the other way round: the loser of one comparison won the other)."""
    now, before = _PAIR.match(new), _PAIR.match(old)
    if now is None or before is None:
        return False
    return normalised(now["y"]) == normalised(before["x"]) or normalised(now["x"]) == normalised(before["y"])


_NEGATIVE = re.compile(r"\b(?:not|no longer|never|dislikes|doesn't|isn't|gave up|avoids|can't)\b")
# Words every statement about the user shares: a shared one says nothing about the topic.
_FRAME = frozenset("user user's team team's is are has have does do not no longer never dislikes likes loves uses prefers gave up avoids can't".split())


def opposed(new: str, old: str) -> bool:
    """True when one statement denies and the other affirms something about the same content word
    ("User dislikes Java" / "User loves Java"); the caller asks the embedder whether they are close."""
    new_l, old_l = new.lower(), old.lower()
    if bool(_NEGATIVE.search(new_l)) == bool(_NEGATIVE.search(old_l)) or not old_l.startswith(_subject_of(new_l)):
        return False
    return bool((set(words(new_l)) & set(words(old_l))) - _FRAME)


def _subject_of(text: str) -> str:
    return "user's team" if text.startswith("user's team") else "user"


def conflicts(new: str, old: str) -> bool:
    """True when `new` replaces `old`: a new value of the same slot, or a negation of what `old` states."""
    if normalised(new) == normalised(old):
        return False
    new_slot = slot(new)
    if new_slot is not None and new_slot == slot(old):
        return True
    new_l, old_l = (" ".join(t.lower().split()).rstrip(".") for t in (new, old))
    if topic_slots(new_l) & topic_slots(old_l) or _given_up_preference(new_l, old_l):
        return True
    gone = negated_object(new)
    if gone is not None and negated_object(old) is None:
        subject, thing = gone
        old_l = " ".join(old.lower().split())
        return old_l.startswith(subject) and f" {thing} " in f" {normalised(old)} "
    return False
