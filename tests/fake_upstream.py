"""A real OpenAI-compatible HTTP server for tests, on a loopback port, in its own thread.

It speaks raw HTTP/1.1 over asyncio streams so it can also misbehave on purpose: reset
connections, stall, send malformed SSE. The request's `model` picks the behaviour:

  anything        JSON or SSE echo of the last user message ("echo: ...")
                  (or the text of an X-Fake-Reply header, for an assistant that says something else)
  fake-tools      answers with a tool call
  fake-slow       waits X-Fake-Delay seconds (default 2) before answering
  fake-error-NNN  answers status NNN with an OpenAI error body (Retry-After if X-Fake-Retry-After)
  fake-reset      streams two chunks, then drops the connection
  fake-hangup     drops the connection before answering
  fake-malformed  streams an SSE event that is not JSON
  fake-drip       streams 50 chunks X-Fake-Delay seconds apart (for disconnects and first byte)
  fake-gzip       JSON reply gzip-encoded (Content-Encoding: gzip), as real upstreams do when asked
  fake-odd-tools  streams tool-call deltas a buggy server sends: `"index": null`, `"function": "x"`

`/v1/responses` and `/v1/messages` are answered as OpenAI's and Anthropic's APIs do (tests/fake_apis.py).

A request whose response_format names `memgate_extraction` gets structured memories back, one per
first-person sentence inside its <user> tags and one per "You"/"Your" sentence inside its <assistant>
tags (what the assistant states about the user), unless its model is fake-error-NNN; one
naming `memgate_reconcile` gets a judge's decision (same text: same; same first three words: replaces);
one naming `memgate_summary` a session summary quoting the user's turns (unless its model is fake-error-NNN).
While `hold_extractions` is cleared, extraction and summary calls wait for it (a test's window on a running batch).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .fake_apis import FakeResponses, input_text, messages_events, message_body, messages_refusal, messages_user_text, responses_events, sse


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    cancelled_streams: int = 0
    open_connections: int = 0
    incomplete_bodies: int = 0  # requests whose sender hung up before the whole body came
    extraction_calls: int = 0
    hold_extractions: threading.Event = field(default_factory=lambda: set_event(threading.Event()))  # cleared: learning calls wait
    responses: FakeResponses = field(default_factory=FakeResponses)

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            # Finish every connection handler while the loop still runs: handlers left pending are
            # finalised later by the garbage collector, against a closed loop, at random moments.
            self.server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def api_requests(self, path: str) -> list[Received]:
        """POSTs to exactly `path` (`/v1/responses`, `/v1/messages`)."""
        return [r for r in self.received if r.path == path and r.method == "POST"]

    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/chat/completions") and b"memgate_extraction" not in r.body]

    def last_chat(self) -> dict[str, Any]:
        return self.chat_requests()[-1].json()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # -- HTTP plumbing -------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                try:
                    body = await self._body(reader, headers)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.incomplete_bodies += 1
                    return
                self.received.append(Received(method, path, headers, body))
                keep = await self._respond(method, path, headers, body, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return  # stop() cancels handlers; end quietly rather than as a cancelled task
        finally:
            self.open_connections -= 1
            writer.close()

    async def _body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if "chunked" in headers.get("transfer-encoding", ""):
            out = b""
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    return out
                out += await reader.readexactly(size)
                await reader.readline()
        return b""

    @staticmethod
    def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, payload: Any, extra: list[tuple[str, str]] = (), *, gzipped: bool = False, head: bool = False) -> bool:
        data = json.dumps(payload).encode()
        if gzipped:
            data = gzip.compress(data)
            extra = [*extra, ("Content-Encoding", "gzip")]
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Set-Cookie", "upstream_session=secret123; Path=/"), ("X-Upstream", "fake")]
        writer.write(self._head(status, headers + list(extra)) + (b"" if head else data))
        await writer.drain()
        return True

    # -- behaviours ------------------------------------------------------------------------------

    async def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path.startswith("/v1/responses"):
            return await self._responses(method, path, headers, body, writer)
        if path.startswith("/v1/messages"):
            return await self._messages(path, headers, body, writer)
        if not path.startswith("/v1/chat/completions") or method != "POST":
            if path.startswith("/v1/embeddings"):
                return await self._send_json(writer, 200, embeddings(json.loads(body)))
            if path.startswith("/v1/models"):
                return await self._send_json(writer, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}, head=method == "HEAD")
            echo = {"method": method, "path": path, "body_len": len(body), "echo_header": headers.get("x-echo", "")}
            return await self._send_json(writer, 200, echo, head=method == "HEAD")
        try:
            req = json.loads(body)
            model = str(req.get("model", ""))
            req.get("messages", [])
        except (ValueError, AttributeError):
            return await self._send_json(writer, 400, {"error": {"message": "fake upstream: bad body", "type": "invalid_request_error", "param": None, "code": None}})
        delay = float(headers.get("x-fake-delay", "2"))
        if model.startswith("so-"):  # structured-output quirks of self-hosted servers
            from .fake_structured import respond

            return await self._send_json(writer, *respond(model, req))
        if is_schema(req, "memgate_reconcile"):
            return await self._send_json(writer, 200, completion(model, json.dumps(judge_memories(req))))
        if is_schema(req, "memgate_summary") and not model.startswith("fake-error-"):
            await asyncio.to_thread(self.hold_extractions.wait, 30)
            return await self._send_json(writer, 200, completion(model, json.dumps(summarize_session(req))))
        if is_schema(req, "memgate_verify"):
            return await self._send_json(writer, 200, completion(model, json.dumps(verify_statement(req))))
        if is_extraction(req) and not model.startswith("fake-error-"):  # an erroring extraction model tests retries
            self.extraction_calls += 1
            await asyncio.to_thread(self.hold_extractions.wait, 30)
            return await self._send_json(writer, 200, completion(model, json.dumps({"memories": extract_memories(req)})))
        if model.startswith("fake-error-"):
            status = int(model.rsplit("-", 1)[1])
            extra = [("Retry-After", headers["x-fake-retry-after"])] if "x-fake-retry-after" in headers else []
            return await self._send_json(writer, status, {"error": {"message": f"fake {status}", "type": "server_error", "param": None, "code": f"fake_{status}"}}, extra)
        if model == "fake-hangup":
            return False
        if model == "fake-slow":
            await asyncio.sleep(delay)
        text = headers.get("x-fake-reply") or "echo: " + last_user_text(req.get("messages", []))
        tools = model == "fake-tools"
        if not req.get("stream"):
            return await self._send_json(writer, 200, completion(model, text, tools), gzipped=model == "fake-gzip" and "gzip" in headers.get("accept-encoding", ""))
        events = stream_events(model, text, tools)
        if model == "fake-malformed":
            events = events[:1] + [b"data: {not json\n\n"] + events[1:]
        if model == "fake-drip":
            events = [event_bytes(chunk(model, {"content": f"w{i} "})) for i in range(50)] + events[-2:]
        if model == "fake-odd-tools":
            odd = [{"index": None, "id": "call_1", "function": {"name": "f", "arguments": ""}}, {"index": 1, "function": "x"}]
            events = events[:1] + [event_bytes(chunk(model, {"tool_calls": [call]})) for call in odd] + events[1:]
        return await self._stream(writer, events, model, content_type="text/event-stream", reset_at=2, pause=delay if model == "fake-drip" else 0.0)


    async def _responses(self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path != "/v1/responses":
            return await self._send_json(writer, *self.responses.other(method, path))
        req = json.loads(body)
        text = headers.get("x-fake-reply") or "echo: " + input_text(req.get("input"))
        if not req.get("stream") or str(req.get("model", "")).startswith("fake-error-"):
            return await self._send_json(writer, *self.responses.create(req, text))
        events = responses_events(req, text)
        self.responses.keep(req, events)
        return await self._stream(writer, [sse(e) for e in events], str(req.get("model", "")))

    async def _messages(self, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> bool:
        req = json.loads(body)
        model = str(req.get("model", ""))
        if path == "/v1/messages/count_tokens":
            return await self._send_json(writer, 200, {"input_tokens": len(body) // 4})
        refused = messages_refusal(headers, model)
        if refused is not None:
            return await self._send_json(writer, *refused)
        text = headers.get("x-fake-reply") or "echo: " + messages_user_text(req.get("messages"))
        if not req.get("stream"):
            return await self._send_json(writer, 200, message_body(model, text))
        return await self._stream(writer, [sse(e) for e in messages_events(model, text)], model)

    async def _stream(
        self, writer: asyncio.StreamWriter, events: list[bytes], model: str, *,
        content_type: str = "text/event-stream; charset=utf-8", reset_at: int = 3, pause: float = 0.0,
    ) -> bool:
        """SSE events, chunked, `pause` seconds apart; fake-reset drops the connection before event `reset_at`."""
        writer.write(self._head(200, [("Content-Type", content_type), ("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")]))
        await writer.drain()
        try:
            for index, event in enumerate(events):
                if model == "fake-reset" and index == reset_at:
                    writer.transport.abort()
                    return False
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, RuntimeError):
            self.cancelled_streams += 1
            return False
        return True


def set_event(event: threading.Event) -> threading.Event:
    event.set()
    return event


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            return str(content)
    return ""


def is_schema(req: dict[str, Any], name: str) -> bool:
    fmt = req.get("response_format") or {}
    return isinstance(fmt, dict) and (fmt.get("json_schema") or {}).get("name") == name


def is_extraction(req: dict[str, Any]) -> bool:
    return is_schema(req, "memgate_extraction")


def judge_memories(req: dict[str, Any]) -> dict[str, Any]:
    """A stand-in reconcile judge: same text -> same; same first three words ("the user is") -> replaces."""
    prompt = str(req["messages"][-1]["content"])
    new = prompt.split("\n", 1)[0].removeprefix("NEW: ")
    words = lambda text: re.findall(r"[a-z0-9']+", text.lower())  # noqa: E731
    for line in prompt.split("EXISTING:\n", 1)[-1].splitlines():
        number, _, text = line.partition(". ")
        if words(text) == words(new):
            return {"action": "same", "memory": int(number)}
        if words(text)[:3] == words(new)[:3]:
            return {"action": "replaces", "memory": int(number)}
    return {"action": "new", "memory": -1}


def verify_statement(req: dict[str, Any]) -> dict[str, Any]:
    """A stand-in verifier of critical facts: the user's words support a statement unless they hedge it."""
    words = str(req["messages"][-1]["content"]).split("\nWORDS:\n", 1)[-1].lower()
    return {"verified": re.search(r"\b(?:might|maybe|perhaps|not sure)\b", words) is None}


def summarize_session(req: dict[str, Any]) -> dict[str, Any]:
    """A stand-in session summarizer: "The user worked on: " and the quoted user turns."""
    turns = [json.loads(line) for line in str(req["messages"][-1]["content"]).splitlines()]
    return {"summary": "The user worked on: " + "; ".join(turns)}


def extract_memories(req: dict[str, Any]) -> list[dict[str, Any]]:
    """A stand-in LLM: each first-person sentence of a user message, or "You"/"Your" sentence of an
    assistant source, becomes a third-person memory."""
    out = []
    for message in req.get("messages", []):
        if message.get("role") != "user":
            continue
        content = str(message.get("content"))
        for text in re.findall(r"<user>(.*?)</user>", content, flags=re.S) or [content]:
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                m = re.match(r"\s*(?:I|My|my|I'm|We|we're)\b(.*)", sentence)
                if m and len(sentence) > 8:
                    third = re.sub(r"^\s*I'm\b", "The user is", sentence)
                    third = re.sub(r"^\s*I\b", "The user", third)
                    third = re.sub(r"^\s*[Mm]y\b", "The user's", third)
                    out.append({"text": third.strip().rstrip("."), "kind": "preference" if "prefer" in sentence else "fact", "confidence": 0.9})
        for text in re.findall(r"<assistant>(.*?)</assistant>", content, flags=re.S):
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                if re.match(r"\s*Your?\b", sentence) and len(sentence) > 8:
                    third = re.sub(r"^\s*Your\b", "The user's", sentence)
                    third = re.sub(r"^\s*You\b", "The user", third)
                    out.append({"text": third.strip().rstrip("."), "kind": "fact", "confidence": 0.9})
    return out


def completion(model: str, text: str, tools: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if tools else text}
    if tools:
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def event_bytes(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream_events(model: str, text: str, tools: bool = False) -> list[bytes]:
    events = [event_bytes(chunk(model, {"role": "assistant", "content": ""}))]
    if tools:
        events.append(event_bytes(chunk(model, {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})))
        events.append(event_bytes(chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]})))
        events.append(event_bytes(chunk(model, {}, "tool_calls")))
    else:
        for word in re.findall(r"\S+\s*", text):
            events.append(event_bytes(chunk(model, {"content": word})))
        events.append(event_bytes(chunk(model, {}, "stop")))
    events.append(b"data: [DONE]\n\n")
    return events


def embeddings(req: dict[str, Any]) -> dict[str, Any]:
    inputs = req.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for i, text in enumerate(inputs):
        digest = hashlib.sha256(str(text).encode()).digest()
        data.append({"object": "embedding", "index": i, "embedding": [b / 255.0 for b in digest[:16]]})
    return {"object": "list", "data": data, "model": req.get("model", ""), "usage": {"prompt_tokens": 1, "total_tokens": 1}}
