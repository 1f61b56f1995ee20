"""A user's whole lifecycle from the CLI alone (`python -m gateway ...` against a running gateway):
add, list, search, update, history, export, forget, import back; and the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .fake_upstream import FakeUpstream
from .harness import ADMIN_TOKEN, ROOT, Gateway, free_port
from .memory_helpers import chat, memory_block, tenant_of

KEY = "sk-cli-lifecycle"
TENANT = tenant_of(KEY)


def memgate(gw: Gateway | str, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    url = gw if isinstance(gw, str) else gw.url
    env = {**os.environ, "MEMGATE_ADMIN_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--url", url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def ok(gw: Gateway, *args: str) -> Any:
    result = memgate(gw, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


def fails(gw: Gateway | str, *args: str, token: str = ADMIN_TOKEN) -> str:
    """The command exits 1 with exactly one line on stderr (no traceback); returns that line."""
    result = memgate(gw, *args, token=token)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memgate: "), result.stderr
    return lines[0]


def user(*args: str, name: str = "dana") -> tuple[str, ...]:
    return (*args, "--tenant", TENANT, "--user", name)


def test_a_users_lifecycle_from_the_cli_alone(gateway: Gateway, upstream: FakeUpstream, tmp_path: Path) -> None:
    seats = ok(gateway, *user("memories", "add", "I prefer window seats on long flights", "--kind", "preference"))
    daughter = ok(gateway, *user("memories", "add", "My daughter is called Mia", "--pin"))
    assert seats["kind"] == "preference" and daughter["pinned"] is True

    listed = ok(gateway, *user("memories", "list"))["memories"]
    assert {m["text"] for m in listed} == {"I prefer window seats on long flights", "My daughter is called Mia"}
    assert ok(gateway, "tenants")["tenants"].count(TENANT) == 1
    assert "dana" in ok(gateway, "users", "list", "--tenant", TENANT)["users"]

    found = ok(gateway, *user("memories", "search", "which seat on a plane", "--top-k", "1"))["results"]
    assert [r["id"] for r in found] == [seats["id"]]

    updated = ok(gateway, *user("memories", "update", seats["id"], "--text", "I prefer aisle seats on long flights"))
    assert updated["text"] == "I prefer aisle seats on long flights" and updated["kind"] == "preference"
    assert ok(gateway, *user("memories", "get", seats["id"]))["text"] == "I prefer aisle seats on long flights"
    history = ok(gateway, *user("memories", "history", seats["id"]))["history"]
    assert [(h["action"], h["cause"]) for h in history] == [("add", "admin"), ("update", "admin")]
    assert history[1]["old_text"] == "I prefer window seats on long flights"

    # The memories reach requests (and so the hot tier holds this user) before the user is forgotten.
    assert "aisle seats" in memory_block(upstream_payload(gateway, upstream))

    export = tmp_path / "dana.jsonl"
    result = memgate(gateway, "export", "--tenant", TENANT, "--user", "dana", "--vectors", "-o", str(export))
    assert result.returncode == 0 and "exported 2 memories" in result.stderr, result.stderr
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert {r["id"] for r in rows} == {seats["id"], daughter["id"]}
    assert all(r["embedder"] and len(r["vector"]) > 0 and r["created_at"] > 0 for r in rows)

    forgotten = ok(gateway, *user("users", "forget"))
    assert forgotten["deleted"] == {"memories": 2, "history": 3, "jobs": 0}
    assert "404" in fails(gateway, *user("memories", "list"))
    assert "404" in fails(gateway, *user("memories", "get", seats["id"]))
    assert memory_block(upstream_payload(gateway, upstream)) == ""  # the hot tier was dropped too

    result = memgate(gateway, "import", str(export))
    assert result.returncode == 0, result.stderr
    assert "2/2" in result.stderr and "imported 2, skipped 0 already present, 0 failed" in result.stderr
    again = memgate(gateway, "import", str(export))
    assert again.returncode == 0 and "imported 0, skipped 2 already present" in again.stderr, again.stderr

    found = ok(gateway, *user("memories", "search", "which seat on a plane", "--top-k", "1"))["results"]
    assert [(r["id"], r["text"]) for r in found] == [(seats["id"], "I prefer aisle seats on long flights")]
    assert ok(gateway, *user("memories", "get", daughter["id"]))["pinned"] is True
    assert [(h["action"], h["cause"]) for h in ok(gateway, *user("memories", "history", seats["id"]))["history"]] == [("add", "import")]
    assert "aisle seats" in memory_block(upstream_payload(gateway, upstream))

    assert ok(gateway, *user("memories", "delete", daughter["id"])).strip() == f"deleted {daughter['id']}"
    assert [m["id"] for m in ok(gateway, *user("memories", "list"))["memories"]] == [seats["id"]]
    assert ok(gateway, "queue", "flush")["done"] is True
    assert "depth" in json.dumps(ok(gateway, "queue", "status"))
    assert set(ok(gateway, "hygiene", "run")["removed"]) == {"ttl", "unused", "cap"}


def upstream_payload(gateway: Gateway, upstream: FakeUpstream) -> dict[str, Any]:
    # Read only: the request shows what is injected without becoming an archival episode of its own.
    response = chat(gateway, KEY, "dana", [{"role": "user", "content": "Book me a seat on the flight to Oslo"}], headers={"X-Memory-Mode": "read"})
    assert response.status_code == 200, response.text
    return upstream.last_chat()


def test_cli_errors_are_one_line_with_exit_code_1(gateway: Gateway, tmp_path: Path) -> None:
    assert "401" in fails(gateway, *user("memories", "list"), token="not-the-token")
    assert "cannot reach the gateway" in fails(f"http://127.0.0.1:{free_port()}", "tenants")
    ok(gateway, *user("memories", "add", "I keep bees", name="erin"))
    assert "404" in fails(gateway, *user("memories", "get", "no-such-memory", name="erin"))
    assert "no admin token" in fails(gateway, "tenants", token="")
    assert "no such file" in fails(gateway, "import", str(tmp_path / "missing.jsonl"))
    assert "401" in fails(gateway, "export", "-o", str(tmp_path / "out.jsonl"), token="not-the-token")
    assert list(tmp_path.iterdir()) == []  # a failed export leaves no (partial) file


def test_import_reports_bad_lines_by_file_line_number_and_keeps_the_good_ones(gateway: Gateway, tmp_path: Path) -> None:
    good = {"id": "imp-1", "tenant": TENANT, "user_id": "fern", "text": "I speak Finnish"}
    lines = [json.dumps(good), "", "{not json", json.dumps({**good, "id": "imp-2", "kind": "opinion"}), json.dumps({**good, "id": "imp-3", "text": "I grow tomatoes"})]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = memgate(gateway, "import", str(path), "--batch", "2")
    assert result.returncode == 1
    assert f"{path}:3: not valid JSON" in result.stderr
    assert f"{path}:4: field 'kind' must be one of" in result.stderr
    assert "imported 2, skipped 0 already present, 2 failed, of 4 lines" in result.stderr
    assert {m["text"] for m in ok(gateway, *user("memories", "list", name="fern"))["memories"]} == {"I speak Finnish", "I grow tomatoes"}


@pytest.mark.parametrize("command", [["memories", "list", "--limit", "0"], ["export", "--user", "dana"]])
def test_requests_the_gateway_refuses_print_its_message(gateway: Gateway, command: list[str]) -> None:
    args = [*command, "--tenant", TENANT, "--user", "x"] if command[0] == "memories" else command
    line = fails(gateway, *args)
    assert "400" in line and len(line) < 300
