"""Runs the real gateway as users do: `python -m gateway serve` under uvicorn on a loopback port, either
executed afresh or forked from an interpreter that has already imported it (tests/zygote.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
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


class Forked:
    """A gateway the zygote forked: the part of subprocess.Popen's interface the tests use."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.wait(0.0, raise_on_timeout=False)

    def wait(self, timeout: float | None = None, *, raise_on_timeout: bool = True) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.wait(self.pid, 3600.0 if timeout is None else timeout)
            if self.returncode is None and raise_on_timeout:
                raise subprocess.TimeoutExpired(f"gateway {self.pid}", timeout or 0.0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """tests/zygote.py running beside the tests: forks gateways from an interpreter that has imported them."""

    def __init__(self) -> None:
        self.env = dict(os.environ)  # what its interpreter starts with
        self.proc: subprocess.Popen | None = None  # started with the first gateway: unit tests never pay for it
        self.lock = threading.Lock()

    def ask(self, request: dict[str, object]) -> dict[str, object]:
        with self.lock:
            if self.proc is None:
                self.proc = subprocess.Popen([sys.executable, "-m", "tests.zygote"], cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote exited with {self.proc.wait()}")
        return json.loads(line)

    def forkable(self, env: dict[str, str]) -> bool:
        """A gateway may be forked when its environment differs from the zygote's only in variables read
        after start-up: MEMGATE_* settings, OTEL_* (OpenTelemetry is imported only when they are set, never by
        the zygote) and pytest's PYTEST_* notes. Anything else (PYTHONPATH, HOME...) may act while modules import."""
        keys = {k for k in env.keys() | self.env.keys() if not k.startswith(("MEMGATE_", "OTEL_", "PYTEST_"))}
        return all(env.get(k) == self.env.get(k) for k in keys)

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> Forked:
        answer = self.ask({"op": "spawn", "argv": argv, "env": env, "cwd": str(ROOT), "log": str(log)})
        return Forked(self, int(answer["pid"]))  # type: ignore[arg-type]

    def wait(self, pid: int, timeout: float) -> int | None:
        returncode = self.ask({"op": "wait", "pid": pid, "timeout": timeout})["returncode"]
        return None if returncode is None else int(returncode)  # type: ignore[arg-type]

    def close(self) -> None:
        """End of input: the zygote stops the gateways still running, then exits."""
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.wait(30)


class Gateway:
    zygote: Zygote | None = None  # set by tests/conftest.py; None: every gateway is a fresh `python -m gateway`

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
        self.proc: subprocess.Popen | Forked | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 60.0) -> Gateway:
        if Gateway.zygote is not None and Gateway.zygote.forkable(self.env):
            self.proc = Gateway.zygote.spawn(self.args[3:], self.env, self.log_path)
        else:
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
