"""Admin API, data part: export and import memories as JSONL, and run a hygiene pass on demand.

Export streams one memory per line (every field; the vector and the embedder's name only with
`vectors=true`). Import takes the same lines back. It is partial by design: every valid line is
imported and every invalid one is reported by line number in `errors` of a 200 answer, so one bad
line in a large backup does not block the rest; a body that is not UTF-8 text at all is a 400.
Ids are global and make it idempotent: a line whose id the same user already holds is counted in
`skipped`, one whose id another user or tenant holds is an error for that line.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, AsyncIterator

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.admin.guard import admin_route, hygiene_of, memory_of
from gateway.config import Settings
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.identity import validate_id
from gateway.memory.fields import confidence_of, count_of, field_of, free_text_of, id_of, memory_kind, memory_text, memory_tier, timestamp_of
from gateway.metrics import Metrics
from gateway.memory.records import Memory

IMPORT_BATCH = 256  # memories embedded and committed together
MAX_REPORTED_ERRORS = 1000
TIMESTAMPS = ("created_at", "updated_at", "last_used_at")


def export_line(m: Memory, embedder: str | None) -> str:
    row = m.public()
    if embedder is not None and m.vector is not None:
        row["embedder"] = embedder
        row["vector"] = [round(float(x), 7) for x in m.vector]
    return json.dumps(row, ensure_ascii=False) + "\n"


def parse_line(text: str, embedder: str, dim: int, now: float) -> Memory:
    """One JSONL line to a Memory; raises ValueError (FieldError for a field, naming it) with the
    validators the admin API uses. The vector is kept only when it comes from this gateway's
    embedder with its dimension (else re-embedded)."""
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not valid JSON") from None
    if not isinstance(row, dict):
        raise ValueError("must be a JSON object")
    mid, tenant, user = (id_of(row, name, required=True) for name in ("id", "tenant", "user_id"))
    stamps = {name: timestamp_of(row, name, now) for name in TIMESTAMPS}
    confidence = confidence_of(row)
    memory = Memory(
        id=str(mid), tenant=str(tenant), user_id=str(user), text=str(memory_text(row, required=True)),
        kind=memory_kind(field_of(row, "kind", str)) or "fact",
        agent_id=id_of(row, "agent_id"), session_id=id_of(row, "session_id"), superseded_by=id_of(row, "superseded_by"),
        source_request_id=free_text_of(row, "source_request_id"),
        created_at=stamps["created_at"] or 0.0, updated_at=stamps["updated_at"] or 0.0, last_used_at=stamps["last_used_at"],
        use_count=count_of(row, "use_count") or 0, confidence=1.0 if confidence is None else confidence,
        pinned=bool(field_of(row, "pinned", bool)), flagged=bool(field_of(row, "flagged", bool)),
        tier=memory_tier(field_of(row, "tier", str)), source_episode=id_of(row, "source_episode"),  # no tier (an older export): from kind and pin
    )
    memory.vector = _vector(row, embedder, dim)
    return memory


def _vector(row: dict[str, Any], embedder: str, dim: int) -> np.ndarray | None:
    raw = row.get("vector")
    if raw is None or row.get("embedder") != embedder or not isinstance(raw, list) or len(raw) != dim:
        return None  # absent or from another model: re-embed rather than mix vector spaces
    try:
        vector = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("field 'vector' must be a list of numbers") from None
    if vector.ndim != 1:
        raise ValueError("field 'vector' must be a list of numbers")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(vector).all() or norm == 0:
        raise ValueError("field 'vector' must be finite and non-zero")
    return vector / norm


def routes(settings: Settings, metrics: Metrics) -> list[Route]:
    """Export, import and hygiene/run, over the services of the lifespan state (503 before they open)."""
    max_body_bytes = settings.max_body_bytes

    async def export(request: Request) -> Response:
        params = request.query_params
        tenant = validate_id(params["tenant"], "tenant") if params.get("tenant") else None
        user = validate_id(params["user"], "user") if params.get("user") else None
        if user is not None and tenant is None:
            raise BadRequest("user needs tenant: pass both", param="tenant", code="missing_parameter")
        vectors = params.get("vectors", "false").lower() in ("1", "true", "yes")
        svc = memory_of(request)

        async def lines() -> AsyncIterator[str]:
            # One user at a time: memory stays bounded by the largest user, not the whole store.
            for t in [tenant] if tenant else await svc.store.tenants():
                for u in [user] if user else await svc.store.users(t):
                    for m in await svc.store.rows(t, u, vectors=vectors):
                        yield export_line(m, svc.embedder.name if vectors else None)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def import_(request: Request) -> Response:
        svc = memory_of(request)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise PayloadTooLarge(f"import body over {max_body_bytes} bytes: split it (memgate import sends batches)")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("import body must be UTF-8 JSONL: one memory object per line", code="invalid_jsonl") from None
        errors: list[dict[str, Any]] = []
        parsed: list[tuple[int, Memory]] = []
        now = time.time()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((number, parse_line(line, svc.embedder.name, svc.embedder.dim, now)))
            except ValueError as exc:
                errors.append({"line": number, "message": str(exc)})
        imported = skipped = 0
        claimed: dict[str, tuple[str, str]] = {}  # ids this body gives a scope to, across batches
        for start in range(0, len(parsed), IMPORT_BATCH):
            batch = parsed[start : start + IMPORT_BATCH]
            holders = await svc.store.holders([m.id for _, m in batch])
            valid = []
            for number, m in batch:
                scope = (m.tenant, m.user_id)
                owners = holders.get(m.id, set()) | ({claimed[m.id]} if m.id in claimed else set())
                if owners - {scope}:  # ids are global: never a second copy in another scope
                    errors.append({"line": number, "message": f"id {m.id!r} belongs to another user or tenant"})
                    continue
                claimed[m.id] = scope
                valid.append(m)
            inserted = len(await svc.write(valid, cause="import"))
            imported += inserted
            skipped += len(valid) - inserted
        errors.sort(key=lambda e: e["line"])
        return JSONResponse({
            "imported": imported, "skipped": skipped, "failed": len(errors), "errors": errors[:MAX_REPORTED_ERRORS],
        })

    async def hygiene_run(request: Request) -> Response:
        return JSONResponse(await hygiene_of(request).run())

    route = functools.partial(admin_route, settings.admin_token, metrics)

    return [
        route("/export", export, ["GET"]),
        route("/import", import_, ["POST"]),
        route("/hygiene/run", hygiene_run, ["POST"]),
    ]
