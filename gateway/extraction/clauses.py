"""The fallback for first-person statements no specific shape knows: a plain clause about the user
("I teach high school chemistry", "I've got a bad knee", "I don't drive") rewritten in the third
person, when its verb says something lasting about the user rather than about the conversation."""

from __future__ import annotations

import re

from gateway.extraction.patterns import TRANSIENT, Found, household_or_team as _who
from gateway.extraction.rewrite import obj, third_person

_ADVERBS = ("now|still|also|usually|mostly|mainly|often|always|never|only|just|really|actually|currently|generally|typically|sometimes|"
            "rarely|basically|primarily|even|already|regularly|normally|occasionally|seriously|severely|totally|definitely|certainly")
_DROP = frozenset("now just really actually currently basically even already seriously totally definitely certainly".split())
_PRESENT = re.compile(rf"^(?P<s>i|we) (?P<adv>(?:(?:{_ADVERBS}) ){{0,3}})(?P<v>[a-z]+)(?: (?P<x>.+))?$", re.I)
_NEGATIVE = re.compile(r"^(?P<s>i|we) (?:don't|do not|dont) (?P<v>[a-z]+)(?: (?P<x>.+))?$", re.I)
_CANNOT = re.compile(r"^i (?:can't|cannot|can not) (?P<v>eat|drink|have|stand|tolerate|digest|drive|swim|handle|take|use) (?P<x>.+)$", re.I)
_BE = re.compile(rf"^(?P<s>i|we)(?:'m|'re| am| are)(?P<neg> not)? (?P<adv>(?:(?:{_ADVERBS}) ){{0,2}})(?P<x>[\w'-]+(?: .+)?)$", re.I)
_PERFECT = re.compile(rf"^(?P<s>i|we)(?:'ve| have) (?P<adv>(?:(?:{_ADVERBS}) ){{0,2}})(?P<v>been|got|lived|worked|used|had|cut|played|studied|owned|"
                      r"practiced|practised|taught|run|driven|kept|known|raised|volunteered|coached|spoken) (?P<x>.+)$", re.I)
_BORN = re.compile(r"^i was (?P<x>born (?:in|on) .+)$", re.I)

# Verbs about the conversation, the task or a passing state: "I see", "I need a regex", "I tried that".
_STOP = frozenset(
    "see agree disagree think guess suppose need want wonder know understand hope feel mean believe appreciate try can could would "
    "should will shall must may might did does was were am is are bet doubt forget remember wish care hear promise apologize apologise "
    "ask say tell look expect thank love like hate prefer use find fix build test check add make call send show give "
    "put open install update change create delete remove stop tried found ran made asked said told looked meant saw tested "
    "checked added fixed wrote updated changed installed built created deleted removed noticed realized realised thought figured "
    "got went came let please mind suggest recommend sort plan intend decide choose reckon assume click copy paste type press import "
    "export print return pass set load save upload download compile execute debug refactor rename merge push pull commit clone".split()
)
# Verbs that may take no object: "I knit", "I don't drive".
_INTRANSITIVE = frozenset("knit garden cook bake swim cycle bike surf climb ski snowboard paint draw sing dance meditate smoke drink drive "
                          "commute freelance run jog hike fish hunt sew skate row box fence golf travel vote pray".split())
# Past events that stay true about the user ("I joined Google in March", "I grew up in Ohio").
_EVENTS = frozenset("joined started left graduated retired married adopted moved switched relocated grew studied quit stopped dropped ditched "
                    "replaced migrated sold bought became finished lost had immigrated emigrated divorced trained served lived worked".split())
# Irregular past forms of everyday verbs: what the user did a moment ago, not who they are.
_PAST = frozenset("sent took gave brought caught put set let felt kept slept spent meant met paid heard held stood understood forgot broke "
                  "chose drove ate drank fell flew hid rode rose sang spoke stole swam threw woke wore won began wrote ran found made did "
                  "saw told said thought built went came got tried".split())
# Progressive forms that describe the user's life, not what they are doing at the keyboard.
_ONGOING = frozenset("training learning studying expecting doing raising renting living teaching fasting recovering volunteering taking "
                     "running retiring homeschooling saving coaching playing practicing practising using working coding programming".split())
# Passing states: "I'm back", "I'm so tired today", "I'm not sure".
_STATES = frozenset(
    "going gonna trying looking wondering curious sure just so very really here back done ready sorry glad happy afraid thinking asking "
    "confused stuck having getting feeling about still tired hungry busy fine ok okay good great well bored interested excited testing "
    "writing building reading migrating moving switching able unable aware all kind pretty quite too almost nearly also having seeing "
    "hoping wanting needing struggling working using planning afk off up down right wrong lost late early".split()
)
# "I read somewhere that ...", "I heard that ...": what someone else said.
_HEARSAY = re.compile(r"^(?:somewhere|that|online)\b", re.I)
_OBJECTS_OF_THE_MOMENT = re.compile(r"^(?:time|access|permission|idea|clue|a clue|any idea|a minute|a second|a moment)\b", re.I)


def _adverbs(text: str) -> str:
    kept = [w.lower() for w in text.split() if w.lower() not in _DROP]
    return " ".join(kept) + " " if kept else ""


def clause(sentence: str) -> Found | None:
    """The statement in the third person, or None when no plain clause about the user fits."""
    m = _BORN.match(sentence)
    if m:
        return f"User was {obj(m['x'])}", "fact", 0.8
    m = _CANNOT.match(sentence)
    if m:
        return f"User can't {m['v'].lower()} {obj(m['x'])}", "fact", 0.8
    m = _NEGATIVE.match(sentence)
    if m:
        return _negative(m)
    m = _PERFECT.match(sentence)
    if m:
        return _perfect(m)
    m = _BE.match(sentence)
    if m:
        return _being(m)
    m = _PRESENT.match(sentence)
    if m:
        return _present(m)
    return None


def _negative(m: re.Match[str]) -> Found | None:
    verb, value = m["v"].lower(), obj(m["x"] or "")
    if verb in _STOP - {"have", "use", "like", "drink", "smoke", "drive"} or (not value and verb not in _INTRANSITIVE) or _OBJECTS_OF_THE_MOMENT.match(value):
        return None
    if verb == "like":
        return f"User dislikes {value}", "preference", 0.8
    return f"{_who(m['s'], value)} does not {verb}{' ' + value if value else ''}", "fact", 0.8


def _perfect(m: re.Match[str]) -> Found | None:
    verb, value = m["v"].lower(), obj(m["x"])
    first = value.split()[0].lower()
    if verb == "been" and first.endswith("ing") and first not in _ONGOING:
        return None
    if verb == "got":
        return f"{_who(m['s'], value)} has {value}", "fact", 0.75
    return f"{_who(m['s'], value)} has {_adverbs(m['adv'])}{verb} {value}", "fact", 0.75


def _being(m: re.Match[str]) -> Found | None:
    value = obj(m["x"])
    first = value.split()[0].lower()
    if first in _STATES or (first.endswith("ing") and first not in _ONGOING):
        return None
    return f"{_who(m['s'], value)} is{' not' if m['neg'] else ''} {_adverbs(m['adv'])}{value}", "fact", 0.75


def _present(m: re.Match[str]) -> Found | None:
    verb, value = m["v"].lower(), obj(m["x"] or "")
    if verb in _STOP or verb in _PAST or verb.endswith(("ing", "n't")) or (not value and verb not in _INTRANSITIVE) or _HEARSAY.match(value):
        return None
    if verb.endswith("ed") or verb in _EVENTS:
        if verb not in _EVENTS:
            return None
        said = verb
    else:
        said = third_person(verb)
    first = value.split()[0].lower() if value else ""
    if set(value.lower().split()) & TRANSIENT or (verb == "have" and first == "to") or (verb in ("keep", "do") and (first.endswith("ing") or first in _STOP)):
        return None
    return f"{_who(m['s'], value)} {_adverbs(m['adv'])}{said}{' ' + value if value else ''}", "fact", 0.7
