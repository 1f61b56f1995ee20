"""The JSON log scrubs secrets wherever they are: the message, the traceback and every extra field
(an upstream URL with credentials in it, say), nested values included."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from .fake_upstream import FakeUpstream
from .harness import Gateway


def test_credentials_in_the_upstream_url_never_reach_the_gateways_log(upstream: FakeUpstream, tmp_path: Path) -> None:
    password = "UpstreamPw7e4d1c"
    gw = Gateway(upstream.url.replace("http://", f"http://memgate-proxy:{password}@"), tmp_path / "data").start()
    try:
        assert httpx.get(gw.url + "/readyz").status_code == 200
    finally:
        gw.stop()
    ready = [json.loads(line) for line in gw.log().splitlines() if '"memgate ready"' in line]
    assert len(ready) == 1 and ready[0]["upstream"].startswith("http://***@127.0.0.1:")  # the line is there, the user-info is not
    assert password not in gw.log() and "memgate-proxy" not in gw.log()
