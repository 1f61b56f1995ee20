"""Load and crash safety: N concurrent clients (JSON and streaming, memory on) against a real gateway
over loopback, optionally SIGKILLed mid-load and restarted on the same data dir; then every accepted
job's fact must be in the store exactly once, and SQLite and LanceDB must open cleanly.

Each request states a unique fact for a fresh user ("My locker number is N."), so every accepted job
(a complete 200 with X-Memory-Status ok) must leave exactly one memory "User's locker number is N".

    python bench/bench_load.py                          # 64 clients, 180 s
    python bench/bench_load.py --duration 240 --kill-at 90
    python bench/bench_load.py --replicas 3 --duration 600 --kill-at 300   # 3 replicas on moto's S3; the last is killed

With --replicas N the gateways share one LanceDB dataset on a local S3-compatible server (moto), each
with its own data dir; clients spread requests over them as a load balancer would, skipping a replica
while it is down; the last replica is the one killed.
Prints a table; exits non-zero when a check fails. Loopback only: the upstream is tests/fake_upstream.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_upstream import FakeUpstream  # noqa: E402  (the same local upstream the tests use)
from tests.harness import Gateway  # noqa: E402
from tests.object_store import ObjectStore  # noqa: E402

KEY = "sk-bench-load"
FACT = "My locker number is {n}."
MEMORY = "User's locker number is {n}"


@dataclass
class Result:
    sent: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # user -> n: complete 200s, each a committed job
    memory_status: dict[str, int] = field(default_factory=dict)  # X-Memory-Status of those (timeout: recall only)
    errors: list[str] = field(default_factory=list)  # gateway errors outside the kill window
    kill_window_errors: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    latencies: list[float] = field(default_factory=list)
    killed_at: float | None = None
    restarted_at: float | None = None
    duration: float = 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def client_loop(index: int, gws: list[Gateway], http: httpx.AsyncClient, stop: float, result: Result, counter: list[int], down: threading.Event, pause: float) -> None:
    seq = 0
    while time.monotonic() < stop:
        # Round robin over the replicas, skipping the one being killed (a load balancer's health check).
        up = gws[:-1] if down.is_set() and len(gws) > 1 else gws
        gw = up[(index + seq) % len(up)]
        if pause and seq:
            await asyncio.sleep(pause)  # pacing (think time), not synchronisation
        counter[0] += 1
        n = counter[0]
        user = f"c{index}-r{seq}"
        seq += 1
        stream = n % 2 == 0
        body = {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": FACT.format(n=n)}]}
        headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user}
        started = time.monotonic()
        result.sent += 1
        try:
            async with http.stream("POST", gw.v1 + "/chat/completions", json=body, headers=headers) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            if response.status_code != 200:
                result.errors.append(f"{response.status_code} {raw[:200]!r}")
                continue
            if stream and b"[DONE]" not in raw:
                result.errors.append("stream ended without [DONE]")
                continue
            result.latencies.append(time.monotonic() - started)
            # A complete answer means the job was committed (before the body's end). A recall past its
            # timeout ("timeout") still writes; the queue's own drops are checked after the run.
            status = response.headers.get("x-memory-status", "")
            result.memory_status[status] = result.memory_status.get(status, 0) + 1
            result.accepted[user] = n
        except httpx.TransportError as exc:
            if down.is_set() or (result.killed_at is not None and result.restarted_at is None):
                result.kill_window_errors += 1
                await asyncio.sleep(0.05)  # the gateway is down: try again shortly
            else:
                result.errors.append(f"{type(exc).__name__}: {exc}")


async def drive(gws: list[Gateway], clients: int, duration: float, kill_at: float | None, result: Result, pause: float = 0.0) -> None:
    gw = gws[-1]  # the one sampled and killed
    counter = [0]
    down = threading.Event()
    begin = time.monotonic()
    stop = begin + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        async def sampler() -> None:
            while time.monotonic() < stop:
                try:
                    if gw.proc is not None and gw.proc.poll() is None:
                        result.rss.append((time.monotonic() - begin, rss_mb(gw.proc.pid)))
                except OSError:
                    pass
                await asyncio.sleep(1.0)

        async def killer() -> None:
            if kill_at is None:
                return
            await asyncio.sleep(kill_at)
            down.set()
            result.killed_at = time.monotonic() - begin
            gw.kill()  # SIGKILL: no shutdown, no flush
            await asyncio.to_thread(gw.start)  # same port, same data dir
            result.restarted_at = time.monotonic() - begin
            down.clear()

        await asyncio.gather(sampler(), killer(), *(client_loop(i, gws, http, stop, result, counter, down, pause) for i in range(clients)))
    result.duration = time.monotonic() - begin


def verify(gws: list[Gateway], result: Result, data_dir: Path, store_uri: str | None = None, sample: int = 200) -> dict[str, object]:
    """Flush every replica, check a sample through the first one's admin API, stop, then read SQLite and LanceDB directly."""
    checks: dict[str, object] = {}
    keys = ("depth", "dead_letters", "dropped", "recovered_on_start", "completed")
    checks["queue_after_flush"] = dict.fromkeys(keys, 0)
    for replica in gws:
        with replica.admin() as admin:
            flushed = admin.post("/queue/flush", params={"timeout": 600}, timeout=660).json()
        for k in keys:
            checks["queue_after_flush"][k] += flushed[k]
    gw = gws[0]
    with gw.admin() as admin:
        tenant = next(iter(admin.get("/tenants").json()["tenants"]))
        users = sorted(result.accepted)[:: max(1, len(result.accepted) // sample)]
        missing_via_admin = 0
        for user in users:
            response = admin.get(f"/tenants/{tenant}/users/{user}/memories")
            texts = [m["text"] for m in response.json().get("memories", [])] if response.status_code == 200 else []
            if texts != [MEMORY.format(n=result.accepted[user])]:
                missing_via_admin += 1
        checks["admin_sample"] = f"{len(users) - missing_via_admin}/{len(users)} found"
    for replica in gws:
        replica.stop()

    checks["jobs_left"] = []
    for path in sorted(data_dir.glob("**/memgate.sqlite3")):  # with --workers, one queue file per worker
        db = sqlite3.connect(path)
        checks["sqlite_integrity"] = db.execute("PRAGMA integrity_check").fetchone()[0] if checks.get("sqlite_integrity", "ok") == "ok" else checks["sqlite_integrity"]
        checks["jobs_left"] += db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        db.close()

    import lancedb

    table = lancedb.connect(store_uri or str(data_dir / "lancedb")).open_table("memories")
    rows = table.to_arrow().select(["id", "user_id", "text", "superseded_by"]).to_pylist()
    checks["lancedb_rows"] = len(rows)
    ids = [r["id"] for r in rows]
    per_user: dict[str, list[str]] = {}
    for r in rows:
        per_user.setdefault(r["user_id"], []).append(r["text"])
    checks["duplicate_ids"] = len(ids) - len(set(ids))
    checks["duplicate_texts"] = sum(len(t) - len(set(t)) for t in per_user.values())
    lost = [u for u, n in result.accepted.items() if MEMORY.format(n=n) not in per_user.get(u, [])]
    checks["lost"] = len(lost)
    checks["lost_examples"] = lost[:5]
    return checks


def run(clients: int = 64, duration: float = 180.0, kill_at: float | None = None, pause: float = 0.0, data_dir: Path | None = None,
        replicas: int = 1, **settings: object) -> tuple[Result, dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="memgate-load-"))
    data = data_dir or work / "data"
    upstream = FakeUpstream().start()
    s3 = ObjectStore(work).start() if replicas > 1 else None
    store_uri = s3.new_uri() if s3 is not None else None
    gws: list[Gateway] = []
    data.mkdir(parents=True, exist_ok=True)
    result = Result()
    try:
        for i in range(replicas):  # one after another: the first creates the tables
            gw = Gateway(upstream.url, data if replicas == 1 else data / f"replica-{i}", production_rules=True, tenant_mode="key", log_level="warning",
                         **({"store_uri": store_uri} if store_uri else {}), **settings)
            if s3 is not None:
                gw.env.update(s3.env)
            gws.append(gw.start())
        asyncio.run(drive(gws, clients, duration, kill_at, result, pause))
        if s3 is not None:
            os.environ.update(s3.env)  # LanceDB reads the store with the same AWS environment
        checks = verify(gws, result, data, store_uri)
    finally:
        for gw in gws:
            gw.stop()
        upstream.stop()
        if s3 is not None:
            s3.stop()
    return result, checks


def per_minute_peaks(samples: list[tuple[float, float]]) -> list[float]:
    """Growth shows as a rising sequence; a bounded process levels off."""
    peaks: dict[int, float] = {}
    for seconds, mb in samples:
        peaks[int(seconds // 60)] = max(peaks.get(int(seconds // 60), 0.0), mb)
    return [peaks[m] for m in sorted(peaks)]


def table(result: Result, checks: dict[str, object], clients: int) -> str:
    lat = sorted(result.latencies) or [0.0]
    rss = [mb for _, mb in result.rss] or [0.0]
    rows = [
        ("clients", clients),
        ("duration s", f"{result.duration:.1f}"),
        ("requests sent", result.sent),
        ("throughput req/s", f"{len(result.latencies) / max(result.duration, 1e-9):.0f}"),
        ("latency p50 / p99 ms", f"{lat[len(lat) // 2] * 1000:.1f} / {lat[int(len(lat) * 0.99)] * 1000:.1f}"),
        ("gateway errors", len(result.errors)),
        ("connection errors in kill window", result.kill_window_errors),
        ("killed at / ready again s", f"{result.killed_at:.1f} / {result.restarted_at:.1f}" if result.killed_at is not None else "-"),
        ("X-Memory-Status of 200s", json.dumps(result.memory_status, sort_keys=True)),
        ("jobs accepted", len(result.accepted)),
        ("memories in LanceDB", checks["lancedb_rows"]),
        ("accepted jobs lost", checks["lost"]),
        ("duplicate ids / texts", f"{checks['duplicate_ids']} / {checks['duplicate_texts']}"),
        ("queue after flush", json.dumps(checks["queue_after_flush"])),
        ("jobs left in SQLite", checks["jobs_left"]),
        ("admin list sample", checks["admin_sample"]),
        ("SQLite integrity_check", checks["sqlite_integrity"]),
        ("RSS start / peak / end MB", f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f}"),
        ("RSS peak per minute MB", " ".join(f"{m:.0f}" for m in per_minute_peaks(result.rss))),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--kill-at", type=float, default=None, help="SIGKILL the gateway this many seconds in, then restart it")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds each client waits between requests (0: closed loop)")
    parser.add_argument("--workers", type=int, default=1, help="memgate serve --workers N (RSS is then the supervisor's only)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas on one S3-compatible store (moto), the last one killed (RSS is its own)")
    args = parser.parse_args()
    started = time.monotonic()
    result, checks = run(args.clients, args.duration, args.kill_at, args.pause, replicas=args.replicas, **({"workers": args.workers} if args.workers > 1 else {}))
    print(f"(load, flush and verification took {time.monotonic() - started:.0f} s)")
    print(table(result, checks, args.clients))
    for error in result.errors[:10]:
        print("error:", error)
    ok = not result.errors and checks["lost"] == 0 and checks["queue_after_flush"]["dropped"] == 0 and checks["duplicate_ids"] == 0 and checks["duplicate_texts"] == 0 and checks["sqlite_integrity"] == "ok"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
