"""Admin API, data part: export and import memories as JSONL, and run a hygiene pass on demand.

Export streams one memory per line (every field; the vector and the embedder's name only with
`vectors=true`). Import takes the same lines back. It is partial by design: every valid line is
imported and every invalid one is reported by line number in `errors` of a 200 answer, so one bad
line in a large backup does not block the rest; a body that is not UTF-8 text at all is a 400.
Ids make it idempotent: a line whose id is already stored is counted in `skipped`.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, AsyncIterator, Callable

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .admin import MAX_TEXT_CHARS, admin_route, opened
from .errors import BadRequest, GatewayError, PayloadTooLarge
from .identity import validate_id
from .memory import MemoryService
from .metrics import Metrics
from .records import KINDS, Memory

IMPORT_BATCH = 256  # memories embedded and committed together
MAX_REPORTED_ERRORS = 1000
OPTIONAL_STR = ("agent_id", "session_id", "source_request_id", "superseded_by")
TIMESTAMPS = ("created_at", "updated_at", "last_used_at")


def export_line(m: Memory, embedder: str | None) -> str:
    row = m.public()
    if embedder is not None and m.vector is not None:
        row["embedder"] = embedder
        row["vector"] = [round(float(x), 7) for x in m.vector]
    return json.dumps(row, ensure_ascii=False) + "\n"


def _number(row: dict[str, Any], name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"field '{name}' must be a non-negative number")
    return float(value)


def parse_line(text: str, embedder: str, dim: int) -> Memory:
    """One JSONL line to a Memory; raises ValueError with a message naming the field. The vector is
    kept only when it comes from this gateway's embedder with its dimension (else re-embedded)."""
    try:
        row = json.loads(text)
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(row, dict):
        raise ValueError("must be a JSON object")
    for name in ("id", "tenant", "user_id", "text"):
        if not isinstance(row.get(name), str):
            raise ValueError(f"field '{name}' is required and must be a string")
    try:
        mid, tenant, user = (validate_id(row[n], n) for n in ("id", "tenant", "user_id"))
    except GatewayError as exc:
        raise ValueError(exc.message) from None
    body = row["text"]
    if not body.strip() or len(body) > MAX_TEXT_CHARS:
        raise ValueError(f"field 'text' must be 1-{MAX_TEXT_CHARS} characters, not blank")
    kind = row.get("kind") or "fact"
    if kind not in KINDS:
        raise ValueError(f"field 'kind' must be one of {', '.join(KINDS)}")
    for name in OPTIONAL_STR:
        if row.get(name) is not None and not isinstance(row[name], str):
            raise ValueError(f"field '{name}' must be a string or null")
    for name in ("pinned", "flagged"):
        if row.get(name) is not None and not isinstance(row[name], bool):
            raise ValueError(f"field '{name}' must be true or false")
    stamps = {name: _number(row, name) for name in TIMESTAMPS}
    use_count = row.get("use_count") or 0
    if isinstance(use_count, bool) or not isinstance(use_count, int) or use_count < 0:
        raise ValueError("field 'use_count' must be a non-negative integer")
    confidence = _number(row, "confidence")
    if confidence is not None and confidence > 1:
        raise ValueError("field 'confidence' must be between 0 and 1")
    memory = Memory(
        id=mid, tenant=tenant, user_id=user, text=body, kind=kind,
        **{name: row.get(name) for name in OPTIONAL_STR},
        created_at=stamps["created_at"] or 0.0, updated_at=stamps["updated_at"] or 0.0, last_used_at=stamps["last_used_at"],
        use_count=use_count, confidence=1.0 if confidence is None else confidence,
        pinned=bool(row.get("pinned")), flagged=bool(row.get("flagged")),
    )
    memory.vector = _vector(row, embedder, dim)
    return memory


def _vector(row: dict[str, Any], embedder: str, dim: int) -> np.ndarray | None:
    raw = row.get("vector")
    if raw is None or row.get("embedder") != embedder or not isinstance(raw, list) or len(raw) != dim:
        return None  # absent or from another model: re-embed rather than mix vector spaces
    try:
        vector = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("field 'vector' must be a list of numbers") from None
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(vector).all() or norm == 0:
        raise ValueError("field 'vector' must be finite and non-zero")
    return vector / norm


def admin_data_routes(memory: Callable[[], MemoryService | None], token: str, metrics: Metrics, max_body_bytes: int, hygiene: Any) -> list[Route]:
    """Export, import and hygiene/run, or nothing when no admin token is configured."""
    if not token:
        return []

    def service() -> MemoryService:
        return opened(memory)

    async def export(request: Request) -> Response:
        params = request.query_params
        tenant = validate_id(params["tenant"], "tenant") if params.get("tenant") else None
        user = validate_id(params["user"], "user") if params.get("user") else None
        if user is not None and tenant is None:
            raise BadRequest("user needs tenant: pass both", param="tenant", code="missing_parameter")
        vectors = params.get("vectors", "false").lower() in ("1", "true", "yes")
        svc = service()

        async def lines() -> AsyncIterator[str]:
            # One user at a time: memory stays bounded by the largest user, not the whole store.
            for t in [tenant] if tenant else await svc.store.tenants():
                for u in [user] if user else await svc.store.users(t):
                    for m in await svc.store.rows(t, u, vectors=vectors):
                        yield export_line(m, svc.embedder.name if vectors else None)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def import_(request: Request) -> Response:
        svc = service()
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
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((number, parse_line(line, svc.embedder.name, svc.embedder.dim)))
            except ValueError as exc:
                errors.append({"line": number, "message": str(exc)})
        valid = [m for _, m in parsed]
        errors.sort(key=lambda e: e["line"])
        imported = 0
        for start in range(0, len(valid), IMPORT_BATCH):
            imported += len(await svc.write(valid[start : start + IMPORT_BATCH], cause="import"))
        return JSONResponse({
            "imported": imported, "skipped": len(valid) - imported, "failed": len(errors), "errors": errors[:MAX_REPORTED_ERRORS],
        })

    async def hygiene_run(request: Request) -> Response:
        service()
        return JSONResponse(await hygiene.run())

    route = functools.partial(admin_route, token, metrics)

    return [
        route("/export", export, ["GET"]),
        route("/import", import_, ["POST"]),
        route("/hygiene/run", hygiene_run, ["POST"]),
    ]
