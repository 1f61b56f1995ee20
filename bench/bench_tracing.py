"""What OpenTelemetry tracing costs: chat latency (p50/p99) and throughput of a memory-off gateway with
tracing off and on, against the same upstream and the upstream hit directly, in one run.

Tracing on exports every span (parent-based always-on sampler) over OTLP/HTTP with the batch
processor to a local sink (the same nginx, which takes each export and logs one line); "sampled 1%"
shows the cost at a sampling ratio production might use. Needs Debian's nginx and wrk
(`apt-get install -y nginx wrk`) and the otel extra (`pip install -e ".[otel]"`).

    python bench/bench_tracing.py --duration 4 --repeat 3 --conc 1,64

Each cell is the median over --repeat runs, the targets interleaved. Targets (issue 17): tracing on
adds at most 0.3 ms p50; off adds nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_proxy import NGINX, WRK, REQUEST, Run, median_run, start_gateway, start_nginx, stop_all, wrk

VARIANTS: dict[str, dict[str, str]] = {  # name -> OTEL_* variables (the sink's endpoint is added to all but "off")
    "off": {},
    "on": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, sampled 1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
}


def hook_costs(sink: str, requests: int = 2000, rounds: int = 5) -> dict[str, float]:
    """In-process CPU time of one request's tracing hooks (server span, upstream call, usage read), in
    microseconds, median over rounds: tracing off, on, and sampled 1%, exporting to `sink` in batches."""
    import asyncio

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gateway.config import Settings
    from gateway.observability import NoTracing
    from gateway.observability.otel import OtelTracing, ServerSpans

    body = json.dumps({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 12, "completion_tokens": 9}}).encode()
    headers = [("content-type", "application/json"), ("authorization", "Bearer sk-bench"), ("user-agent", "bench")]
    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "scheme": "http",
             "headers": [(n.encode(), v.encode()) for n, v in headers]}

    def traced(sampler: object) -> OtelTracing:
        sdk = TracerProvider(sampler=sampler)  # type: ignore[arg-type]
        sdk.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink}/v1/traces")))
        return OtelTracing(sdk, Settings(upstream_url="http://127.0.0.1:1/v1"))

    def request(tracing: NoTracing):
        async def app(scope, receive, send):  # what the proxy's chat handler asks of the tracing
            call = tracing.upstream_call()
            call.start("gpt-4o-mini", "http://127.0.0.1:1/v1/chat/completions", headers)
            call.end(200, body=body)
            await send({"type": "http.response.start", "status": 200, "headers": []})
        return ServerSpans(app, tracing.tracer) if isinstance(tracing, OtelTracing) else app

    variants = {"off": NoTracing(), "on": traced(ParentBased(ALWAYS_ON)), "on, sampled 1%": traced(ParentBased(TraceIdRatioBased(0.01)))}
    apps = {name: request(t) for name, t in variants.items()}

    async def send(message: object) -> None:
        pass

    async def run() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                started = time.process_time()
                for _ in range(requests):
                    await app(scope, None, send)
                samples[name].append((time.process_time() - started) / requests * 1e6)
        return {name: statistics.median(values) for name, values in samples.items()}

    try:
        return asyncio.run(run())
    finally:
        for t in variants.values():
            t.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--conc", default="1,64", help="comma-separated wrk connection counts")
    args = parser.parse_args()
    missing = [name for name, path in (("nginx", NGINX), ("wrk", WRK)) if not path]
    if missing:
        print(f"bench_tracing: {' and '.join(missing)} not found: apt-get update && apt-get install -y nginx wrk", file=sys.stderr)
        return 2
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        print('bench_tracing: OpenTelemetry is not installed: pip install -e ".[otel]"', file=sys.stderr)
        return 2
    concs = [int(c) for c in args.conc.split(",")]
    work = Path(tempfile.mkdtemp(prefix="memgate-bench-tracing-"))
    script = work / "post.lua"
    script.write_text('wrk.method = "POST"\n' f"wrk.body = '{json.dumps(REQUEST)}'\n" 'wrk.headers["Content-Type"] = "application/json"\n'
                      'wrk.headers["Authorization"] = "Bearer sk-bench-0000000000000000"\n')
    procs: list[subprocess.Popen] = []
    try:
        nginx, nginx_port = start_nginx(work)
        procs.append(nginx)
        sink = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{nginx_port}", "OTEL_SERVICE_NAME": "memgate-bench"}
        targets: list[tuple[str, int]] = [("direct (nginx)", nginx_port)]
        for i, (name, otel) in enumerate(VARIANTS.items()):
            proc, port = start_gateway(work, nginx_port, {}, f"v{i}", {**sink, **otel} if otel else {})
            procs.append(proc)
            targets.append((f"gateway, tracing {name}", port))
        samples: dict[tuple[str, int], list[Run]] = {}
        for conc in concs:
            for _, port in targets:
                wrk(port, conc, 1, script)  # warm-up
            for _ in range(args.repeat):
                for label, port in targets:
                    samples.setdefault((label, conc), []).append(wrk(port, conc, args.duration, script))
        exports = work / "otlp-exports.log"
        print(f"\nmemgate tracing overhead: wrk -t1, {args.duration}s x {args.repeat} runs per cell (median), memory off, one worker; "
              f"upstream and OTLP sink: nginx, 1 worker; {sum(1 for _ in exports.open()) if exports.exists() else 0} OTLP exports received")
        header = f"{'target':<32} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'vs off p50':>10} {'vs off p99':>10} {'errors':>6}"
        print(header)
        print("-" * len(header))
        for conc in concs:
            off = median_run(samples[("gateway, tracing off", conc)])
            for label, _ in targets:
                run = median_run(samples[(label, conc)])
                vs = ("", "") if not label.startswith("gateway") else (f"{run.p50_ms - off.p50_ms:+.3f}", f"{run.p99_ms - off.p99_ms:+.3f}")
                print(f"{label:<32} {conc:>4} {run.p50_ms:>8.3f} {run.p99_ms:>8.3f} {run.rps:>9.0f} {vs[0]:>10} {vs[1]:>10} {run.errors:>6}")
        costs = hook_costs(f"http://127.0.0.1:{nginx_port}")
        print("\nin-process CPU per request of the tracing hooks (process time, export thread included; median of 5 x 2,000): "
              + ", ".join(f"{name} {us:.1f} us" for name, us in costs.items()))
        print(f"host load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print("\ntarget: tracing on adds <= 0.3 ms p50 over tracing off")
    finally:
        stop_all(procs, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
