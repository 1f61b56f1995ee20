"""An S3-compatible object store for the tests: moto's server on a loopback port, its bucket, and the
AWS environment LanceDB reads (endpoint, region, keys, plain HTTP)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from .harness import free_port

BUCKET = "memgate-test"


class ObjectStore:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a gateway needs in its environment to use the store (the keys are moto's, not secrets)."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ALLOW_HTTP": "true"}

    def start(self, timeout: float = 30.0) -> ObjectStore:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto exited with {self.proc.returncode}:\n{self.log_path.read_text(errors='replace')}")
            try:
                # S3's CreateBucket: a PUT on the bucket's path.
                if httpx.put(f"{self.endpoint}/{BUCKET}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"moto not ready in {timeout}s")

    def new_uri(self) -> str:
        """A fresh dataset prefix in the bucket: one per group of replicas."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
