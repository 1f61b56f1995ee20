"""Any Responses or Messages body, with memory on and a memory to inject, gets an answer that is not a 500:
the gateway's own errors in the route's shape, or the upstream's answer."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import add_memory
from .test_fuzz import json_values

KEY = "sk-api-fuzz-77a1"
text_part = st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "text", "image", "tool_result", "tool_use"])},
                                  optional={"text": json_values, "content": json_values, "input": json_values, "id": json_values})
content = st.text(max_size=30) | st.lists(text_part | json_values, max_size=3) | json_values
items = st.lists(st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "assistant", "developer", "system", "x"]) | json_values,
                                                     "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"]) | json_values,
                                                     "content": content, "output": json_values}) | json_values, max_size=4)
responses_bodies = st.fixed_dictionaries({"model": st.just("m") | json_values},
                                         optional={"input": st.text(max_size=30) | items | json_values, "instructions": st.text(max_size=20) | json_values,
                                                   "stream": st.booleans(), "safety_identifier": json_values, "max_output_tokens": json_values, "tools": json_values})
messages_bodies = st.fixed_dictionaries({"model": st.just("m") | json_values},
                                        optional={"messages": items | json_values, "system": st.text(max_size=20) | st.lists(text_part, max_size=2) | json_values,
                                                  "stream": st.booleans(), "metadata": st.fixed_dictionaries({"user_id": json_values}) | json_values,
                                                  "max_tokens": json_values, "tools": json_values})


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    rules = tmp_path_factory.mktemp("fuzz-rules")
    (rules / "10-tail.toml").write_text('[[rule]]\nname = "tail"\nmatch = { header = { "X-Placement" = "tail" } }\nplacement = "tail"\n')
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("api-fuzz") / "data", rules, anthropic_upstream_url="upstream").start()
    add_memory(gateway, KEY, "fuzz", "The user likes fuzzing", pinned=True)  # always injected: every insert path runs
    yield gateway
    gateway.stop()


def check(response: httpx.Response, anthropic_shape: bool) -> None:
    assert response.status_code < 500 or response.status_code in (502, 504), response.text
    if response.status_code >= 400 and response.headers.get("x-upstream") != "fake" and response.headers.get("content-type", "").startswith("application/json"):
        body: Any = response.json()
        if anthropic_shape:
            assert body["type"] == "error" and isinstance(body["error"]["message"], str) and body["error"]["type"]
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=responses_bodies, placement=st.sampled_from(["system", "tail"]))
def test_any_responses_body_with_memory_on_is_served_never_a_500(gw: Gateway, body: dict[str, Any], placement: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": "fuzz", "X-Placement": placement, "Content-Type": "application/json"}
    check(httpx.post(gw.v1 + "/responses", content=json.dumps(body), headers=headers, timeout=30), anthropic_shape=False)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=messages_bodies, placement=st.sampled_from(["system", "tail"]))
def test_any_messages_body_with_memory_on_is_served_never_a_500(gw: Gateway, body: dict[str, Any], placement: str) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "X-Memory-User-Id": "fuzz", "X-Placement": placement, "Content-Type": "application/json"}
    check(httpx.post(gw.v1 + "/messages", content=json.dumps(body), headers=headers, timeout=30), anthropic_shape=True)
