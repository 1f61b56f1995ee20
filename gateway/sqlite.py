"""The gateway's SQLite file (queue, history, metadata): opening, pragmas and schema migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import aiosqlite

LOCK_RETRIES = 6  # about 0.3 s of backoff in all

# Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,   -- AUTOINCREMENT: ids never reused, so flush marks stay valid
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent_id TEXT,
        session_id TEXT,
        rule TEXT NOT NULL,
        extractor TEXT NOT NULL,
        roles TEXT NOT NULL,
        messages TEXT NOT NULL,                 -- JSON [[role, text, is_source], ...]
        reply TEXT NOT NULL,
        request_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | running | dead
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX jobs_user ON jobs (tenant, user_id, id);
    CREATE INDEX jobs_state ON jobs (state, id);
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        memory_id TEXT NOT NULL,
        action TEXT NOT NULL,
        old_text TEXT,
        new_text TEXT,
        cause TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX history_memory ON history (tenant, user_id, memory_id, seq);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('instance', lower(hex(randomblob(16))));
    """,
    # The W3C traceparent of the request that queued the job ('' untraced): its spans link back to it, after a restart too.
    "ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';",
    # The memory's tier (core, recall, archival) as of each change; NULL in rows recorded before it.
    "ALTER TABLE history ADD COLUMN tier TEXT;",
)


async def open_db(path: str | Path, busy_timeout_ms: int = 5000) -> aiosqlite.Connection:
    """Open (creating if needed) and migrate the SQLite file; the connection is in autocommit mode.

    Autocommit: every statement is its own transaction, so callers sharing the connection never
    end up inside each other's transaction; multi-statement work uses `transaction()`.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(str(path), isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    await db.execute("PRAGMA journal_mode = WAL")
    # WAL + NORMAL: a committed transaction is in the WAL file once COMMIT returns, so it survives
    # the process being killed (kill -9, OOM); only an OS crash or power loss before the next
    # checkpoint can lose the last commits. FULL would fsync every enqueue on the request path.
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("PRAGMA foreign_keys = ON")
    # Deleted rows (forgotten users, redacted history, done jobs) are overwritten, not left in free space.
    await db.execute("PRAGMA secure_delete = ON")
    await migrate(db)
    return db


async def truncate_wal(db: aiosqlite.Connection) -> bool:
    """Checkpoint the WAL into the database and truncate it to zero bytes; False when a reader or
    writer kept it from finishing (the next call retries)."""
    async with db.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
        busy, _, _ = await cur.fetchone()
    return not busy


async def write(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
    """`db.execute` for a write, retried on "database is locked".

    Under load (bench_load.py) SQLite sometimes refuses a write at once, without its busy handler,
    while the request-path connection commits; SQLite's advice for that case is to retry.
    """
    params = list(params)
    for attempt in range(LOCK_RETRIES):
        try:
            return await db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == LOCK_RETRIES - 1:
                raise
            await asyncio.sleep(0.005 * 2**attempt)
    raise AssertionError("unreachable")


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the schema up to the newest version; returns it."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
        row = await cur.fetchone()
    version = row[0] or 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; the version row goes in the same script so a crash
        # between them cannot leave a half-recorded migration.
        await db.executescript(f"BEGIN;\n{script}\nINSERT INTO schema_version (version) VALUES ({number});\nCOMMIT;")
    return len(MIGRATIONS)


async def instance_id(db: aiosqlite.Connection) -> str:
    """A random id made once per SQLite file: row numbers are only unique within one file, so ids
    derived from them include it (the history an older release kept here, moved to the shared store)."""
    async with db.execute("SELECT value FROM meta WHERE key = 'instance'") as cur:
        row = await cur.fetchone()
    return str(row[0])


def open_request_writer(path: str | Path) -> sqlite3.Connection:
    """A plain sqlite3 connection for the one write on the request path (enqueue), used on the
    event loop itself: an INSERT into the WAL costs ~10 us there, against ~150 us for a hop to
    aiosqlite's thread and back. It never waits for a lock (busy_timeout 0: the caller falls back
    to the aiosqlite connection) and never checkpoints (that fsyncs; the aiosqlite side does it).
    """
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 0")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # the same durability as open_db's connection
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("PRAGMA secure_delete = ON")  # as open_db's connection
    return db
