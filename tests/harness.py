"""Runs the real gateway as users do: `python -m gateway serve` under uvicorn on a loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-5f2a9c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The shipped 50 ms recall timeout is a latency budget for production; on a loaded 2-core CI box
# a user's first (cold) recall can exceed it, which would make tests about *what* is recalled
# flaky. tests/test_recall.py proves the timeout path itself with its own rules.
TEST_DEFAULTS = "[defaults]\nrecall_timeout_ms = 5000\n"


def rules_for_tests(rules: Path | None, scratch: Path) -> Path:
    """A copy of the shipped rules, or the test's own rules dir, with a generous recall timeout.

    Added last to the shipped copy (overriding its 50 ms) but first to a test's own dir, so any
    `[defaults]` a test writes itself still wins.
    """
    if rules is None:
        scratch.mkdir(parents=True, exist_ok=True)
        for shipped in (ROOT / "rules").glob("*.toml"):
            shutil.copy(shipped, scratch / shipped.name)
        (scratch / "zz-test-defaults.toml").write_text(TEST_DEFAULTS)
        return scratch
    rules = Path(rules)
    if rules.resolve() == (ROOT / "rules").resolve():
        return rules_for_tests(None, scratch)  # never write into the repository's own rules
    if rules.is_dir() and not (rules / "00-test-defaults.toml").exists():
        (rules / "00-test-defaults.toml").write_text(TEST_DEFAULTS)
    return rules


def with_rules(upstream_url: str, root: Path, rules_file: str, rules: str, **settings: object) -> "Gateway":
    """A gateway (not started) on `root`/data whose rules dir holds one file `rules_file` with `rules`."""
    (root / "rules").mkdir()
    (root / "rules" / rules_file).write_text(rules)
    return Gateway(upstream_url, root / "data", rules=root / "rules", **settings)


class Gateway:
    def __init__(self, upstream_url: str, data_dir: Path, rules: Path | str | None = None, *, production_rules: bool = False, **settings: object) -> None:
        """`production_rules=True` runs the shipped rules unchanged (benchmarks measure those)."""
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"gateway-{self.port}.log"
        if production_rules:
            rules = ROOT / "rules"
        else:
            rules = rules_for_tests(Path(rules) if rules is not None else None, data_dir.parent / f"rules-{self.port}")
        self.args = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--upstream", upstream_url,
                     "--data-dir", str(data_dir), "--rules", str(rules)]
        self.env = {**os.environ, "MEMGATE_ADMIN_TOKEN": ADMIN_TOKEN, "MEMGATE_LOG_LEVEL": "info"}
        self.env.pop("MEMGATE_CONFIG", None)
        for name, value in settings.items():
            self.env["MEMGATE_" + name.upper()] = str(value)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 60.0) -> Gateway:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, label_text = sample.partition("{")
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total
