"""The rules in force, reloaded when the rules directory changes (polled) or on SIGHUP.

A reload that fails validation keeps the rules already in force and logs why.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway.metrics import Metrics
from gateway.rules import RuleSet, RulesError, load_rules, rules_fingerprint

log = logging.getLogger("memgate.rules")


class LiveRules:
    def __init__(self, directory: str | Path, metrics: Metrics) -> None:
        self.directory = Path(directory)
        self.metrics = metrics
        self.current: RuleSet = load_rules(self.directory)  # invalid rules fail start-up
        self._seen = rules_fingerprint(self.directory)

    def reload(self) -> bool:
        """Load the directory again; keep the old rules if the new ones are invalid."""
        self._seen = rules_fingerprint(self.directory)
        try:
            self.current = load_rules(self.directory)
        except RulesError as exc:
            self.metrics.rules_reloads.labels("invalid").inc()
            log.error("rules reload failed, keeping the previous rules: %s", exc)
            return False
        self.metrics.rules_reloads.labels("ok").inc()
        log.info("rules reloaded: %d rules from %d files", len(self.current.rules), len(self.current.files))
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Poll file names, sizes and mtimes: cheap, and works on every filesystem and in containers."""
        while True:
            await asyncio.sleep(interval)
            if rules_fingerprint(self.directory) != self._seen:
                self.reload()
