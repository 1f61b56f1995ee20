"""Runs a real Prometheus (Debian's `prometheus` package) on a loopback port, scraping test gateways."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from .harness import free_port


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: install Debian's `prometheus` package (apt-get install prometheus; .ci/run does)"
    return path


class Prometheus:
    """One Prometheus process with its own config and TSDB under `workdir`, scraping every second."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path] = (), interval: str = "1s") -> None:
        self.workdir = workdir
        self.port = free_port()
        # JSON is YAML: no YAML library needed to write the config.
        self.config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "memgate", "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        args = [binary("prometheus"), f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        self._wait(lambda: httpx.get(self.url + "/-/ready", timeout=1).status_code == 200, timeout, "ready")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer, else AssertionError with Prometheus's error."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body.get("status") == "success", f"{path} {params}: {response.status_code} {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result series (vector results; a scalar comes back as one series)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def scrapes(self, job: str = "memgate") -> int:
        """Successful scrapes of `job` so far (summed over its targets)."""
        result = self.query(f'sum(sum_over_time(up{{job="{job}"}}[1h]))')  # up is 1 per successful scrape
        return int(float(result[0]["value"][1])) if result else 0

    def wait_for_scrapes(self, more: int, timeout: float = 30.0) -> None:
        """Returns once `more` further scrapes have landed."""
        target = self.scrapes() + more
        self._wait(lambda: self.scrapes() >= target, timeout, f"{more} more scrapes")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus: no {what} within {timeout}s:\n{self.log()}")
