"""Pending confirmations: a new statement that contradicts a critical memory is stored held back (its
`superseded_by` is `confirm:` + the contradicted memory's id) until the user confirms or denies it.

Held-back memories are never recalled as facts; the memory block carries one confirmation line per
pending pair instead, and the user's next yes or no settles it (gateway/extraction/settle.py)."""

from __future__ import annotations

from gateway.memory.records import Memory

PREFIX = "confirm:"
ASKED_PER_MEMORY = 4  # request ids remembered per pending memory: enough to tell "asked before" from "asked now"


def pending_on(old_id: str) -> str:
    """The `superseded_by` value of a memory waiting for the user to confirm it over `old_id`."""
    return PREFIX + old_id


def held_for(memory: Memory) -> str | None:
    """The id of the memory this one waits to replace, or None when it is not pending."""
    mark = memory.superseded_by
    return mark[len(PREFIX):] if mark and mark.startswith(PREFIX) else None


class Asked:
    """Which requests carried each confirmation: an answer counts only once the question was asked in an earlier request."""

    def __init__(self) -> None:
        self._requests: dict[str, list[str]] = {}

    def note(self, memory_id: str, request_id: str) -> None:
        seen = self._requests.setdefault(memory_id, [])
        if request_id not in seen:
            seen.append(request_id)
            del seen[:-ASKED_PER_MEMORY]

    def before(self, memory_id: str, request_id: str) -> bool:
        """Whether a request other than `request_id` (the answering one) showed the confirmation."""
        return any(r != request_id for r in self._requests.get(memory_id, ()))

    def settled(self, memory_id: str) -> None:
        self._requests.pop(memory_id, None)
