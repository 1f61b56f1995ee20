"""Secrets: caller API keys, the admin token and the extraction key never appear in anything the gateway
writes (log, every file under the data dir, /metrics, response bodies), in any common encoding. The admin
API refuses missing or wrong tokens with 401, compares in constant time, and is absent without a token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

import httpx
from starlette.requests import Request

from gateway.admin import guard as admin_module
from gateway.errors import Unauthorized
from gateway.identity import key_fingerprint

from .fake_upstream import FakeUpstream
from .harness import Gateway

RUN = secrets.token_hex(6)
CALLER = f"sk-callerSECRET{RUN}caller"
OTHER_CALLER = f"sk-otherSECRET{RUN}other"
ADMIN = f"admSECRET{RUN}token"
EXTRACTION = f"sk-extractSECRET{RUN}key"


def variants(secret: str) -> dict[str, bytes]:
    """The forms a leaked secret could take on disk or in text."""
    raw = secret.encode()
    digest = hashlib.sha256(raw).hexdigest()
    return {
        "raw": raw,
        "without prefix": secret.split("SECRET", 1)[1].encode(),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64 bearer": base64.b64encode(b"Bearer " + raw).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "hex": raw.hex().encode(),
        "sha256": digest.encode(),
        "sha256/32": digest[:32].encode(),
    }


def fingerprint_only(secret: str) -> bytes:
    # A caller key's tenant id is k_ + 16 hex of its sha256 (gateway/identity.py): expected on disk for callers,
    # never for the admin token or the extraction key, which are never tenants.
    return key_fingerprint(secret).encode()


def traffic(gw: Gateway, upstream: FakeUpstream, bodies: list[bytes]) -> None:
    def chat(key: str, model: str = "gpt-4o", stream: bool = False, user: str = "sam", content: str = "My boat is called Heron.", **headers: str) -> None:
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}
        try:
            with httpx.stream("POST", gw.v1 + "/chat/completions", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {key}", "X-Memory-User-Id": user, **headers}) as response:
                bodies.append(response.read())
        except httpx.TransportError:
            pass  # fake-reset and fake-hangup break the stream on purpose

    chat(CALLER)
    chat(CALLER, stream=True, content="My bike is called Swift.")
    chat(OTHER_CALLER, user="kim", content="I live in Oslo.")
    for model in ("fake-error-401", "fake-error-429", "fake-error-500", "fake-reset", "fake-hangup", "fake-malformed"):
        chat(CALLER, model=model, stream=model in ("fake-reset", "fake-malformed"))
    chat(CALLER, user="bad user id")  # a 400 of our own
    bodies.append(httpx.post(gw.v1 + "/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {CALLER}"}).content)
    bodies.append(httpx.post(gw.v1 + "/chat/completions", json={"model": "m", "messages": []}, headers={"api-key": CALLER, "X-Memory-User-Id": "sam"}).content)
    bodies.append(httpx.get(gw.v1 + "/models", headers={"Authorization": f"Bearer {CALLER}"}).content)
    bodies.append(httpx.post(gw.v1 + "/embeddings", json={"input": "x", "model": "e"}, headers={"Authorization": f"Bearer {CALLER}"}).content)
    for wrong in ("", "Bearer", f"Bearer {ADMIN[:-1]}x", f"Bearer {CALLER}", f"Basic {base64.b64encode(ADMIN.encode()).decode()}", ADMIN):
        response = httpx.get(gw.url + "/admin/v1/tenants", headers={"Authorization": wrong} if wrong else {})
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
        bodies.append(response.content)
    with httpx.Client(base_url=gw.url + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        assert admin.post("/queue/flush").status_code == 200
        tenant = key_fingerprint(CALLER)
        listed = admin.get(f"/tenants/{tenant}/users/sam/memories")
        assert listed.status_code == 200 and listed.json()["memories"], listed.text  # the extraction really ran
        for m in listed.json()["memories"]:
            bodies.append(admin.get(f"/tenants/{tenant}/users/sam/memories/{m['id']}/history").content)
        bodies += [listed.content, admin.get("/queue").content, admin.get("/tenants").content]
    bodies.append(httpx.get(gw.url + "/metrics").content)


def everything_written(gw: Gateway, bodies: list[bytes]) -> dict[str, bytes]:
    out = {"log": gw.log().encode(), **{f"response {i}": b for i, b in enumerate(bodies)}}
    for path in Path(gw.data_dir).rglob("*"):
        if path.is_file():
            out[str(path)] = path.read_bytes()
    return out


def assert_no_secret_in(written: dict[str, bytes]) -> None:
    hits = []
    for secret in (CALLER, OTHER_CALLER, ADMIN, EXTRACTION):
        for form, needle in variants(secret).items():
            hits += [f"{form} of {secret[:12]}... in {where}" for where, data in written.items() if needle in data or needle.lower() in data.lower()]
    for secret in (ADMIN, EXTRACTION):
        hits += [f"fingerprint of {secret[:12]}... in {where}" for where, data in written.items() if fingerprint_only(secret) in data]
    assert hits == []


def test_no_secret_reaches_the_log_the_data_dir_metrics_or_responses(start_gateway, upstream: FakeUpstream) -> None:
    # One gateway extracts with the configured key, one with the caller's key (held in memory only).
    configured = start_gateway(extractor="llm", extraction_api_key=EXTRACTION, admin_token=ADMIN)
    callers = start_gateway(extractor="llm", admin_token=ADMIN)
    bodies: list[bytes] = []
    seen_before = len(upstream.received)
    for gw in (configured, callers):
        traffic(gw, upstream, bodies)
    # The keys did go upstream (that is their job): the check below is not vacuous.
    sent = [r.headers.get("authorization", "") for r in upstream.received[seen_before:]]
    assert f"Bearer {EXTRACTION}" in sent and f"Bearer {CALLER}" in sent
    written = {}
    for gw in (configured, callers):
        written.update(everything_written(gw, bodies))  # live files (WAL included)
        gw.stop()
        written.update({f"{k} (after stop)": v for k, v in everything_written(gw, []).items()})
    assert sum(1 for k in written if "lancedb" in k) > 3 and any(k.endswith("memgate.sqlite3") for k in written)
    assert fingerprint_only(CALLER) in b"".join(written.values())  # a caller's tenant id is its fingerprint, by design
    assert_no_secret_in(written)


def test_the_admin_api_is_absent_without_a_token(start_gateway) -> None:
    gw = start_gateway(admin_token="")
    for method, path in (("GET", "/admin/v1/tenants"), ("GET", "/admin/v1/queue"), ("POST", "/admin/v1/queue/flush")):
        response = httpx.request(method, gw.url + path, headers={"Authorization": "Bearer"})
        assert response.status_code == 404 and set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_admin_tokens_are_compared_in_constant_time(monkeypatch) -> None:
    # Timing over HTTP on a shared 2-core machine cannot resolve a memcmp; assert the mechanism instead:
    # every check goes through hmac.compare_digest with the whole given and configured token.
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(admin_module.hmac, "compare_digest", spy)
    token = "t" * 64
    for given, ok in ((token, True), ("x" + token[1:], False), (token[:-1] + "x", False), (token + "x", False), ("t", False)):
        request = Request({"type": "http", "headers": [(b"authorization", f"Bearer {given}".encode())]})
        try:
            admin_module.authorized(request, token)
            assert ok, given
        except Unauthorized:
            assert not ok, given
        assert calls[-1] == (given.encode(), token.encode())
    assert len(calls) == 5
