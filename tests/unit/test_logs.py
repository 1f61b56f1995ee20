"""logs.py: the JSON log scrubs secrets in the message and in every extra field, nested values included."""

from __future__ import annotations

import json
import logging
import time

import pytest

from gateway.logs import JsonFormatter, scrub


@pytest.mark.parametrize("text, secret", [
    ("http://memgate:UrlPass9f2c@127.0.0.1:9/v1", "UrlPass9f2c"),
    ("https://tok3n5ecret@upstream.example/v1", "tok3n5ecret"),
    ("postgres://app:pw8a7b6c@db/x", "pw8a7b6c"),
    ("admin_token=adm1n5ecret", "adm1n5ecret"),
    ('{"password": "hunter22x"}', "hunter22x"),
    ("client_secret: cl1ent5ecret&x=1", "cl1ent5ecret"),
    ("Authorization: Bearer 0123456789abcdef", "0123456789abcdef"),
    ("api_key=sk-live-abcdef", "abcdef"),
])
def test_scrub_masks_credentials(text: str, secret: str) -> None:
    assert secret not in scrub(text)
    assert "***" in scrub(text)


@pytest.mark.parametrize("text", ["max_tokens: 512", "budget_tokens = 1024", "token compare failed", "http://host/path?email=a@b", "X-Memory-Injected-Tokens: 17"])
def test_scrub_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub(text) == text


def test_scrub_takes_linear_time_on_hostile_text() -> None:
    # Logged text can carry what a client sent; a pattern that backtracks on it would stall the event loop.
    hostile = "upstream http://host/v1 said " + "a-" * 100_000 + " " + "x.y" * 30_000
    started = time.perf_counter()
    assert scrub(hostile) == hostile
    assert time.perf_counter() - started < 1.0


def test_extra_fields_are_scrubbed_like_the_message() -> None:
    record = logging.LogRecord("memgate.test", logging.INFO, __file__, 1, "started", (), None)
    record.upstream = "http://memgate:UrlPass9f2c@127.0.0.1:9/v1"
    record.admin_token = "plain-looking-value"
    record.detail = {"headers": ["Bearer 0123456789abcdef"], "api_key": "abc", "injected_tokens": 17, "nested": {"password": "x"}}
    record.attempt = 3
    entry = json.loads(JsonFormatter().format(record))
    text = json.dumps(entry)
    for secret in ("UrlPass9f2c", "plain-looking-value", "0123456789abcdef", '"abc"'):
        assert secret not in text
    assert entry["upstream"] == "http://***@127.0.0.1:9/v1"  # still says where the upstream is
    assert entry["detail"]["injected_tokens"] == 17 and entry["attempt"] == 3 and entry["detail"]["nested"] == {"password": "***"}
