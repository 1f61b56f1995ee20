from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway, Zygote


@pytest.fixture(scope="session", autouse=True)
def zygote() -> Iterator[None]:
    """Gateways fork from one interpreter that has imported them (tests/zygote.py); MEMGATE_TEST_FORK=0 execs each."""
    if os.environ.get("MEMGATE_TEST_FORK", "1") == "0":
        yield
        return
    Gateway.zygote = Zygote()
    yield
    Gateway.zygote.close()
    Gateway.zygote = None


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway per test module, on the shipped rules, with memory on."""
    gw = Gateway(upstream.url, tmp_path_factory.mktemp("gw") / "data").start()
    yield gw
    gw.stop()


@pytest.fixture
def start_gateway(upstream: FakeUpstream, tmp_path: Path) -> Iterator:
    """Start extra gateways with custom settings; all are stopped after the test."""
    started: list[Gateway] = []

    def start(rules: Path | str | None = None, data_dir: Path | None = None, **settings: object) -> Gateway:
        kwargs = {} if rules is None else {"rules": rules}
        gw = Gateway(upstream.url, data_dir or tmp_path / f"data{len(started)}", **kwargs, **settings).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def admin(gw: Gateway) -> Iterator[httpx.Client]:
    """An admin API client of the module's own `gw` gateway."""
    with gw.admin() as client:
        yield client
