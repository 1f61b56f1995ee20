"""`memgate demo`: memory working end to end, offline, in seconds.

Starts a built-in echo upstream and the gateway in this process (temp data dir), plays a short
conversation for two users, and prints what was extracted and what was injected later.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.app import build_app
from gateway.config import Settings
from gateway.memory.inject import TEMPLATES, quoted

SCRIPT = {
    "alice": [
        "Hi! I'm a backend engineer and I prefer Terraform over CloudFormation.",
        "My timezone is PST, and we're migrating our services to AWS this quarter.",
    ],
    "bob": [
        "I'm vegetarian and I live in Lisbon.",
    ],
}
LATER = {
    "alice": "Which infrastructure tool should we use for the migration?",
    "bob": "Suggest a dinner recipe for tonight.",
}


def echo_upstream(seen: list[dict[str, Any]]) -> Starlette:
    """A stand-in LLM that answers politely and remembers the system message it was sent."""

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        last = body["messages"][-1]["content"]
        return JSONResponse({
            "id": "chatcmpl-demo", "object": "chat.completion", "created": 0, "model": body.get("model", "demo"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"Noted: {last[:60]}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def _serving(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _system_block(body: dict[str, Any]) -> str:
    first = body["messages"][0]
    return first["content"] if first.get("role") in ("system", "developer") else "(no memory block)"


async def run_demo(out: Any = print, rules_dir: str | None = None, embedder: str = "local") -> dict[str, Any]:
    """Play the script and return what each later request carried (for tests)."""
    seen: list[dict[str, Any]] = []
    token = secrets.token_hex(16)
    up_port, gw_port = _port(), _port()
    with tempfile.TemporaryDirectory(prefix="memgate-demo-") as tmp:
        rules = rules_dir or str(Path(tmp) / "rules")  # no rules files: the built-in defaults
        settings = Settings(
            port=gw_port, upstream_url=f"http://127.0.0.1:{up_port}/v1", data_dir=tmp, rules=rules,
            admin_token=token, tenant_mode="none", embedder=embedder,
        )
        async with _serving(echo_upstream(seen), up_port), _serving(build_app(settings), gw_port):
            base = f"http://127.0.0.1:{gw_port}"
            async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Authorization": "Bearer demo-key"}) as http:
                admin = {"Authorization": f"Bearer {token}"}
                out("== 1. Two users tell the assistant about themselves")
                for user, lines in SCRIPT.items():
                    for line in lines:
                        out(f"  {user}: {line}")
                        await http.post("/v1/chat/completions", json={"model": "demo", "user": user, "messages": [{"role": "user", "content": line}]})
                await http.post("/admin/v1/queue/flush", headers=admin)
                out("\n== 2. What memgate extracted (asynchronously, after each reply)")
                extracted: dict[str, list[str]] = {}
                for user in SCRIPT:
                    listing = (await http.get(f"/admin/v1/tenants/default/users/{user}/memories", headers=admin)).json()
                    extracted[user] = [m["text"] for m in listing["memories"]]
                    for text in extracted[user]:
                        out(f"  {user}: {text}")
                out("\n== 3. A later request: the memory block the model received")
                injected: dict[str, str] = {}
                for user, question in LATER.items():
                    before = len(seen)
                    response = await http.post("/v1/chat/completions", json={
                        "model": "demo", "user": user,
                        "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}],
                    })
                    injected[user] = _system_block(seen[before])
                    out(f"  {user} asks: {question}")
                    out(f"  X-Memory-Injected: {response.headers.get('x-memory-injected')} memories, "
                        f"{response.headers.get('x-memory-injected-tokens')} tokens")
                    out("  " + injected[user].replace("\n", "\n  "))
                    out("")
    return {"extracted": extracted, "injected": injected}


def recall_worked(result: dict[str, Any]) -> bool:
    """Each user had memories extracted, and their later request carried a memory block (in
    inject.py's rendering) quoting their own memories and none of another user's."""
    marker = TEMPLATES["default"][0].split("\n")[0]  # the block's opening tag
    for user, block in result["injected"].items():
        own = result["extracted"].get(user) or []
        others = [t for u, texts in result["extracted"].items() if u != user for t in texts]
        if not own or marker not in block or not any(quoted(t) in block for t in own) or any(quoted(t) in block for t in others):
            return False
    return True


def main() -> int:
    result = asyncio.run(run_demo())
    ok = recall_worked(result)
    print("demo finished:", "memory works" if ok else "no memory was injected (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

