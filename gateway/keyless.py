"""Chat requests whose caller has no tenant of its own (no API key, or a placeholder everyone sends).

Their memory is off: with a keyless upstream (vLLM, Ollama) anyone could otherwise read anyone's
memories by guessing a user id. Each is counted; the first of each kind is logged with what to do.
"""

from __future__ import annotations

import logging

from .identity import NO_KEY, Identity
from .metrics import Metrics

log = logging.getLogger("memgate.identity")


class KeylessCallers:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._logged: set[str] = set()  # tenant fingerprints; bounded by the placeholder list, plus "no key"

    def memory_off(self, identity: Identity, request_id: str) -> None:
        """Count a request whose memory is turned off for want of a key; log the first of each key."""
        assert identity.keyless is not None
        self.metrics.keyless_memory_off.labels(identity.keyless).inc()
        if identity.tenant in self._logged:
            return
        self._logged.add(identity.tenant)
        what = "no API key" if identity.keyless == NO_KEY else "a placeholder API key anyone can send"
        log.warning(
            f"memory is off for chat requests with {what}: such callers would all share one tenant. "
            f"To serve them on purpose, behind your own authentication, run with --tenant-mode none "
            f'or map this key in memgate.toml: [tenants] "{identity.tenant}" = "<name>". Logged once per key.',
            extra={"request_id": request_id, "reason": identity.keyless, "fingerprint": identity.tenant},
        )
