"""CLI twins of the admin API: `memgate memories|users|tenants|queue|hygiene|export|import`.

They talk to a running gateway over HTTP (`--url`, token from `--admin-token` or
MEMGATE_ADMIN_TOKEN), so the CLI, the API and every replica see one consistent store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import httpx


class CommandError(Exception):
    """A CLI command failed; the message is printed as one line and the exit code is 1."""


class AdminClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        if not token:
            raise CommandError("no admin token: pass --admin-token or set MEMGATE_ADMIN_TOKEN")
        try:
            self.http = httpx.Client(base_url=url.rstrip("/") + "/admin/v1", headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise CommandError(f"invalid --url {url!r}: {exc}") from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach the gateway at {self.http.base_url}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise CommandError(f"{response.status_code}: {error_message(response)}")
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def stream_lines(self, path: str, params: dict[str, str]) -> Iterator[str]:
        try:
            with self.http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CommandError(f"{response.status_code}: {error_message(response)}")
                yield from response.iter_lines()
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach the gateway at {self.http.base_url}: {type(exc).__name__}") from None


def error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


def user_path(args: argparse.Namespace) -> str:
    return f"/tenants/{quote(args.tenant, safe='')}/users/{quote(args.user, safe='')}"


def client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(args.url, args.admin_token or os.environ.get("MEMGATE_ADMIN_TOKEN", ""))


def show(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# -- commands ----------------------------------------------------------------------------------


def memories_list(args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit)} | ({"kind": args.kind} if args.kind else {}) | ({"cursor": args.cursor} if args.cursor else {})
    params |= {"tier": args.tier} if args.tier else {}
    show(client(args).call("GET", user_path(args) + "/memories", params=params))
    return 0


def memories_search(args: argparse.Namespace) -> int:
    body = {"query": args.query, "top_k": args.top_k} | ({"agent_id": args.agent} if args.agent else {}) | ({"tier": args.tier} if args.tier else {})
    show(client(args).call("POST", user_path(args) + "/memories/search", json=body))
    return 0


def memories_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"text": args.text, "kind": args.kind}
    if args.pin:
        body["pinned"] = True
    if args.confidence is not None:
        body["confidence"] = args.confidence
    if args.agent:
        body["agent_id"] = args.agent
    show(client(args).call("POST", user_path(args) + "/memories", json=body))
    return 0


def memories_get(args: argparse.Namespace) -> int:
    show(client(args).call("GET", f"{user_path(args)}/memories/{quote(args.id, safe='')}"))
    return 0


def memories_update(args: argparse.Namespace) -> int:
    body = {k: v for k, v in {"text": args.text, "kind": args.kind, "pinned": args.pin, "confidence": args.confidence}.items() if v is not None}
    if not body:
        raise CommandError("nothing to update: pass --text, --kind, --confidence or --pin/--unpin")
    show(client(args).call("PATCH", f"{user_path(args)}/memories/{quote(args.id, safe='')}", json=body))
    return 0


def memories_delete(args: argparse.Namespace) -> int:
    client(args).call("DELETE", f"{user_path(args)}/memories/{quote(args.id, safe='')}")
    print(f"deleted {args.id}")
    return 0


def memories_history(args: argparse.Namespace) -> int:
    show(client(args).call("GET", f"{user_path(args)}/memories/{quote(args.id, safe='')}/history"))
    return 0


def users_list(args: argparse.Namespace) -> int:
    show(client(args).call("GET", f"/tenants/{quote(args.tenant, safe='')}/users"))
    return 0


def users_forget(args: argparse.Namespace) -> int:
    show(client(args).call("DELETE", user_path(args)))
    return 0


def tenants_list(args: argparse.Namespace) -> int:
    show(client(args).call("GET", "/tenants"))
    return 0


def queue_status(args: argparse.Namespace) -> int:
    show(client(args).call("GET", "/queue"))
    return 0


def queue_flush(args: argparse.Namespace) -> int:
    show(client(args).call("POST", "/queue/flush", params={"timeout": str(args.timeout)}))
    return 0


def hygiene_run(args: argparse.Namespace) -> int:
    show(client(args).call("POST", "/hygiene/run"))
    return 0


def export(args: argparse.Namespace) -> int:
    params = {k: v for k, v in {"tenant": args.tenant, "user": args.user}.items() if v}
    if args.vectors:
        params["vectors"] = "true"
    # Into FILE.part, renamed at the end: a failed export never leaves a truncated file behind.
    part = Path(args.output + ".part") if args.output else None
    out = part.open("w", encoding="utf-8") if part else sys.stdout
    count = 0
    try:
        for line in client(args).stream_lines("/export", params):
            if line.strip():
                out.write(line + "\n")
                count += 1
    except BaseException:
        if part:
            out.close()
            part.unlink(missing_ok=True)
        raise
    if part:
        out.close()
        part.replace(args.output)
    print(f"exported {count} memories", file=sys.stderr)
    return 0


def import_(args: argparse.Namespace) -> int:
    """Send the file in batches; the server reports bad lines by their number within a batch,
    mapped back here to the file's line numbers. Exit 1 when any line failed."""
    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    if args.batch < 1:
        raise CommandError("--batch must be at least 1")
    try:
        numbered = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None
    admin = client(args)
    done = imported = skipped = 0
    failures: list[str] = []
    for start in range(0, len(numbered), args.batch):
        batch = numbered[start : start + args.batch]
        body = "\n".join(line for _, line in batch) + "\n"
        result = admin.call("POST", "/import", content=body.encode(), headers={"Content-Type": "application/x-ndjson"})
        imported += int(result.get("imported", 0))
        skipped += int(result.get("skipped", 0))
        failures += [f"{path}:{batch[e['line'] - 1][0]}: {e['message']}" for e in result.get("errors", [])]
        done += len(batch)
        progress(done, len(numbered))
    print(file=sys.stderr)
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"imported {imported}, skipped {skipped} already present, {len(failures)} failed, of {len(numbered)} lines", file=sys.stderr)
    return 1 if failures else 0


def progress(done: int, total: int, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)


# -- parser ------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, user: bool = True) -> None:
    parser.add_argument("--url", default=os.environ.get("MEMGATE_URL", "http://127.0.0.1:8080"), help="gateway URL (env MEMGATE_URL)")
    parser.add_argument("--admin-token", default=None, help="admin token (env MEMGATE_ADMIN_TOKEN)")
    if user:
        parser.add_argument("--tenant", required=True, help="tenant (k_... fingerprint or mapped name)")
        parser.add_argument("--user", required=True, help="end-user id")


def register(sub: argparse._SubParsersAction) -> None:
    memories = sub.add_parser("memories", help="inspect and correct one user's memories").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = memories.add_parser("list", help="list memories")
    _common(p)
    p.add_argument("--kind", help="only this kind")
    p.add_argument("--tier", help="only this tier: core, recall or archival")
    p.add_argument("--limit", type=int, default=50, help="at most this many")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.set_defaults(func=memories_list)
    p = memories.add_parser("search", help="hybrid search like recall does")
    _common(p)
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--tier", help="only this tier: core, recall or archival")
    p.add_argument("--agent", help="search as this agent sees (default: every agent's memories)")
    p.set_defaults(func=memories_search)
    p = memories.add_parser("add", help="add a memory")
    _common(p)
    p.add_argument("text")
    p.add_argument("--kind", default="fact", help="fact, preference, decision, goal, event or note")
    p.add_argument("--pin", action="store_true", help="pin to the always-injected core profile")
    p.add_argument("--confidence", type=float, help="0 to 1 (default 1)")
    p.add_argument("--agent", help="visible to this agent only (default: to every agent)")
    p.set_defaults(func=memories_add)
    for name, func, text in (("get", memories_get, "show one memory"), ("delete", memories_delete, "delete one memory"), ("history", memories_history, "every change to one memory")):
        p = memories.add_parser(name, help=text)
        _common(p)
        p.add_argument("id")
        p.set_defaults(func=func)
    p = memories.add_parser("update", help="correct a memory's text, kind or pin")
    _common(p)
    p.add_argument("id")
    p.add_argument("--text")
    p.add_argument("--kind")
    p.add_argument("--pin", dest="pin", action="store_const", const=True, default=None, help="pin to the core profile")
    p.add_argument("--unpin", dest="pin", action="store_const", const=False, help="unpin")
    p.add_argument("--confidence", type=float, help="0 to 1")
    p.set_defaults(func=memories_update)

    users = sub.add_parser("users", help="list users or forget one").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = users.add_parser("list", help="users of a tenant")
    _common(p, user=False)
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=users_list)
    p = users.add_parser("forget", help="delete a user's memories, history and queued jobs")
    _common(p)
    p.set_defaults(func=users_forget)

    p = sub.add_parser("tenants", help="list tenants")
    _common(p, user=False)
    p.set_defaults(func=tenants_list)

    queue = sub.add_parser("queue", help="extraction queue status or flush").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = queue.add_parser("status", help="depth, oldest age, failures")
    _common(p, user=False)
    p.set_defaults(func=queue_status)
    p = queue.add_parser("flush", help="wait until every job queued so far is done")
    _common(p, user=False)
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (exit 1)")
    p.set_defaults(func=queue_flush)

    hygiene = sub.add_parser("hygiene", help="memory hygiene (TTL, unused expiry, per-user cap)").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = hygiene.add_parser("run", help="run a hygiene pass now and print what it removed")
    _common(p, user=False)
    p.set_defaults(func=hygiene_run)

    p = sub.add_parser("export", help="export memories as JSONL")
    _common(p, user=False)
    p.add_argument("--tenant", help="only this tenant")
    p.add_argument("--user", help="only this user (with --tenant)")
    p.add_argument("--vectors", action="store_true", help="include embedding vectors")
    p.add_argument("--output", "-o", help="file to write (default stdout)")
    p.set_defaults(func=export)

    p = sub.add_parser("import", help="import memories from JSONL (re-embedded when vectors are absent or of another model)")
    _common(p, user=False)
    p.add_argument("file")
    p.add_argument("--batch", type=int, default=500, help="memories per request")
    p.set_defaults(func=import_)
