"""Chat requests whose caller has no tenant of its own (no API key, or a placeholder everyone sends).

Their memory is off: with a keyless upstream (vLLM, Ollama) anyone could otherwise read anyone's
memories by guessing a user id. Each is counted; the first with each key is logged, saying what to do.
"""

from __future__ import annotations

import logging

from gateway.identity import NO_KEY
from gateway.metrics import Metrics

log = logging.getLogger("memgate.identity")

# Case variants of a placeholder have fingerprints of their own: stop logging after this many keys.
MAX_LOGGED_KEYS = 64


class KeylessCallers:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._logged: set[str] = set()  # fingerprints already logged, at most MAX_LOGGED_KEYS

    def memory_off(self, reason: str, fingerprint: str, request_id: str, api: str = "chat") -> None:
        """Count a request whose memory is off for want of a key (`reason`: NO_KEY or PLACEHOLDER_KEY); log each key once."""
        self.metrics.keyless_memory_off.labels(reason, api).inc()
        if fingerprint in self._logged or len(self._logged) >= MAX_LOGGED_KEYS:
            return
        self._logged.add(fingerprint)
        what = "no API key" if reason == NO_KEY else "a placeholder API key anyone can send"
        log.warning(
            f"memory is off for chat requests with {what}: such callers would all share one tenant. "
            "To serve them on purpose, behind your own authentication, run with --tenant-mode none "
            f'or map this key in memgate.toml: [tenants] "{fingerprint}" = "<name>". Logged once per key.',
            extra={"request_id": request_id, "reason": reason, "fingerprint": fingerprint},
        )
