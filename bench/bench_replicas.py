"""Replicas on object storage: three gateways on one S3-compatible store (moto's server, local), each
with its own data dir, against the local fake upstream.

Measures: how long after a memory is committed on replica A replica B recalls it (B cold for the
user, and B warm: the user already in its hot tier); how long after a forget on A replica B stops
injecting; chat latency on B for a cold user (its memories read from the store) and a warm one,
next to the upstream hit directly; extraction throughput (jobs/s) with 1 and 3 replicas.

    python bench/bench_replicas.py [--trials 20] [--jobs 600]
Prints a table. Loopback only; the store is moto on this machine, so object-store latency is low.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import tempfile

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_upstream import FakeUpstream  # noqa: E402  (the same local upstream the tests use)
from tests.harness import ADMIN_TOKEN, Gateway  # noqa: E402
from tests.object_store import ObjectStore  # noqa: E402

KEY = "sk-bench-replicas"
QUESTION = "What is my cat called?"


def chat(gw_or_url: Gateway | str, user: str, text: str) -> httpx.Response:
    base = gw_or_url.v1 if isinstance(gw_or_url, Gateway) else gw_or_url
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user}
    return httpx.post(base + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": text}]}, headers=headers, timeout=30)


def injected(gw: Gateway, user: str) -> int:
    return int(chat(gw, user, QUESTION).headers["X-Memory-Injected"])


def admin(gw: Gateway, method: str, path: str, **kwargs: object) -> httpx.Response:
    response = httpx.request(method, gw.url + "/admin/v1" + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120, **kwargs)  # type: ignore[arg-type]
    response.raise_for_status()
    return response


def until(predicate, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            return float("inf")
        time.sleep(0.01)
    return time.perf_counter() - started


def add(gw: Gateway, user: str, text: str) -> None:
    admin(gw, "POST", f"/tenants/default/users/{user}/memories", json={"text": text})


def propagation(a: Gateway, b: Gateway, trials: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"learned, B cold": [], "learned, B warm": [], "forget": []}
    for i in range(trials):
        cold, warm = f"cold{i}", f"warm{i}"
        add(a, cold, "My cat is called Miso")
        out["learned, B cold"].append(until(lambda: injected(b, cold) == 1))
        add(a, warm, "My cat is called Miso")
        until(lambda: injected(b, warm) == 1)  # warm is now in B's hot tier
        add(a, warm, "My cat is a grey tabby")
        out["learned, B warm"].append(until(lambda: injected(b, warm) == 2))
        admin(a, "DELETE", f"/tenants/default/users/{warm}")
        out["forget"].append(until(lambda: injected(b, warm) == 0))
    return out


def latency(b: Gateway, upstream: FakeUpstream, users: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"upstream direct": [], "B, cold user": [], "B, warm user": []}
    for i in range(users):
        user = f"lat{i}"
        add(b, user, "My cat is called Miso")
    b.stop()
    b.start()  # nothing in its hot tier
    for i in range(users):
        for name, target in (("upstream direct", upstream.url), ("B, cold user", b), ("B, warm user", b)):
            started = time.perf_counter()
            response = chat(target, f"lat{i}", QUESTION)
            out[name].append(time.perf_counter() - started)
            assert response.status_code == 200
    return out


def throughput(gateways: list[Gateway], jobs: int, tag: str) -> float:
    def send(i: int) -> None:
        assert chat(gateways[i % len(gateways)], f"{tag}{i}", f"My locker number is {i}.").status_code == 200

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(jobs)))
        list(pool.map(lambda gw: admin(gw, "POST", "/queue/flush", params={"timeout": 600}), gateways))
    return jobs / (time.perf_counter() - started)


def quantiles(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1000:8.1f} ms   p99 {xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000:8.1f} ms   max {xs[-1] * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s3 = ObjectStore(work).start()
        upstream = FakeUpstream().start()
        started: list[Gateway] = []

        def replicas(n: int, uri: str, name: str) -> list[Gateway]:
            out = []
            for i in range(n):
                gw = Gateway(upstream.url, work / f"{name}{i}", store_uri=uri, tenant_mode="none", hygiene_interval=0)
                gw.env.update(s3.env)
                out.append(gw.start())
                started.append(gw)
            return out

        try:
            a, b, c = replicas(3, s3.new_uri(), "r")
            rows = {k: quantiles(v) for k, v in propagation(a, b, args.trials).items()}
            rows.update({k: quantiles(v) for k, v in latency(b, upstream, args.trials).items()})
            three = throughput([a, b, c], args.jobs, "t3-")
            for gw in (a, b, c):
                gw.stop()
            [one] = replicas(1, s3.new_uri(), "solo")
            single = throughput([one], args.jobs, "t1-")
        finally:
            for gw in started:
                gw.stop()
            upstream.stop()
            s3.stop()
    print(f"\n{'measure':<28} result ({args.trials} trials, S3 = moto on loopback)")
    for name, text in rows.items():
        print(f"{name:<28} {text}")
    print(f"{'extraction, 1 replica':<28} {single:8.1f} jobs/s ({args.jobs} jobs)")
    print(f"{'extraction, 3 replicas':<28} {three:8.1f} jobs/s ({args.jobs} jobs, {three / single:.2f}x)")


if __name__ == "__main__":
    main()
