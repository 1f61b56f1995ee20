"""What kind of thing a statement is about, so that a new value replaces the old one of the same kind:
the tool a user (or their team) uses for a job ("User uses Slack" then "User's team switched to Teams"),
how many of something they have ("two kids" then "three kids"), an allergy, the language of answers."""

from __future__ import annotations

import re

# One tool per job at a time: a new one for the same job replaces the old.
_TOOLS: dict[str, str] = {
    "editor": r"vs ?code|visual studio code|vim|neovim|nvim|emacs|helix|sublime(?: text)?|intellij(?: idea)?|pycharm|webstorm|goland|zed|cursor|xcode|eclipse",
    "chat": r"slack|(?:microsoft |ms )?teams|discord|mattermost|zulip|rocket\.chat|google chat",
    "infrastructure as code": r"terraform|opentofu|pulumi|cloudformation|(?:aws )?cdk|crossplane",
    "ci": r"jenkins|github actions|gitlab ci|circleci|circle ci|travis(?: ci)?|buildkite|teamcity|azure pipelines",
    "hosting": r"aws|gcp|google cloud|azure|digitalocean|linode|hetzner|heroku|fly\.io|render|vercel|netlify",
    "browser": r"chrome|firefox|safari|arc|brave|vivaldi",
    "shell": r"bash|zsh|fish shell",
    "package manager": r"npm|pnpm|yarn|bun",
    "issue tracker": r"jira|linear|asana|trello|clickup|youtrack",
    "wiki": r"confluence|notion|coda",
    "monitoring": r"datadog|grafana|new relic|honeycomb",
}
_TOOL_PATTERNS = {job: re.compile(rf"(?<![\w.])(?:{names})(?![\w])", re.I) for job, names in _TOOLS.items()}
_SUBJECT = r"(?:the )?user(?:'s team)?"
_USING = re.compile(rf"^{_SUBJECT} (?:(?:now|still|mostly|also|only|mainly) )*(?P<v>uses|is using|switched|moved|migrated|chose|decided to use|prefers) (?P<x>.+)$")
_ALTERNATIVE = re.compile(r" (?:over|to|than|instead of|rather than|for|when|as) ")
_COUNTED = (r"kids?|children|child|sons?|daughters?|grandkids?|grandchildren|grandchild|siblings?|brothers?|sisters?|dogs?|cats?|pets?|"
            r"cars?|bikes?|horses?|chickens?|rabbits?")
_COUNT = re.compile(rf"^{_SUBJECT} has (?:(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|\d+) )(?:(?:young|little|grown|adult|small) )?(?P<n>{_COUNTED})\b")
_ALLERGY = re.compile(rf"^{_SUBJECT} (?:is (?:(?:not|no longer|severely|mildly|very|highly|also) )*allergic to (?P<x>[^,]+)|has (?:a|an) (?P<y>[\w-]+) allergy)")
_LANGUAGE = re.compile(rf"^{_SUBJECT} (?:prefers that the assistant (?:always )?(?:answer|reply|respond|write|talk|speak)|wants (?:answers|replies|responses)) (?:\w+ ){{0,3}}?in [a-z]+$")
_SAME_THING = {"children": "kid", "child": "kid", "kids": "kid", "grandchildren": "grandkid", "grandchild": "grandkid"}


def _singular(noun: str) -> str:
    return _SAME_THING.get(noun, noun[:-1] if noun.endswith("s") else noun)


def topic_slots(text: str) -> set[tuple[str, ...]]:
    """The slots `text` (lowercase, one line) fills by topic: ("tool", "uses", "chat"), ("count", "kid"), ..."""
    found: set[tuple[str, ...]] = set()
    using = _USING.match(text)
    if using is not None:
        verb, value = using["v"], using["x"]
        if verb in ("switched", "moved", "migrated"):
            value = (" " + value).rpartition(" to ")[2]
        else:
            value = _ALTERNATIVE.split(value, maxsplit=1)[0]
        how = "prefers" if verb == "prefers" else "uses"
        for job, pattern in _TOOL_PATTERNS.items():
            if len({m.lower() for m in pattern.findall(value)}) == 1:
                found.add(("tool", how, job))
    count = _COUNT.match(text)
    if count is not None:
        found.add(("count", _singular(count["n"])))
    allergy = _ALLERGY.match(text)
    if allergy is not None:
        found.add(("allergy", _singular((allergy["x"] or allergy["y"]).strip())))
    if _LANGUAGE.match(text):
        found.add(("answers", "language"))
    return found
