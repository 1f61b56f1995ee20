"""Gateway overhead: chat latency (p50/p99) and throughput, gateway vs the upstream hit directly.

Memory off, one worker, both targets measured in one run.

The upstream is nginx answering POST /v1/chat/completions with a canned completion (as instant as
an upstream gets); wrk drives both targets with the same POST at concurrency 1 and 64. Needs
Debian's nginx and wrk (`apt-get install -y nginx wrk`); installs nothing itself.

    python bench/bench_proxy.py                       # default gateway vs direct
    python bench/bench_proxy.py --variants all        # also asyncio loop, h11 parser, httpx transport
    python bench/bench_proxy.py --duration 5 --repeat 3 --conc 1,64

Each cell is the median over --repeat runs (2 noisy cores). Targets (issue 2): added p50 <= 1 ms at
concurrency 1, >= 800 req/s at concurrency 64.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
WRK = shutil.which("wrk")

COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"}, "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}
RESPONSE = {  # POST /v1/responses (bench_long_prompt.py)
    "id": "resp_bench", "object": "response", "created_at": 1700000000, "status": "completed", "model": "gpt-4o-mini",
    "output": [{"type": "message", "id": "msg_bench", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello! How can I help you today?", "annotations": []}]}],
    "usage": {"input_tokens": 12, "output_tokens": 9, "total_tokens": 21},
}
MESSAGE = {  # POST /v1/messages (bench_long_prompt.py)
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "stop_reason": "end_turn", "stop_sequence": None,
    "content": [{"type": "text", "text": "Hello! How can I help you today?"}], "usage": {"input_tokens": 12, "output_tokens": 9},
}
REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Say hello."}]}

# Gateway variants: name -> MEMGATE_* settings. "default" is what ships.
VARIANTS = {
    "default": {},
    "asyncio-loop": {"loop": "asyncio"},
    "h11": {"http": "h11"},
    "httpx-transport": {"upstream_transport": "httpx"},
    "no-request-logs": {"log_level": "warning"},  # what the per-request JSON log line costs
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, method: str = "GET", **kw: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.request(method, url, timeout=1, **kw).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not answering after {timeout}s")


def start_nginx(work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    body, response, message = (json.dumps(b, separators=(",", ":")).replace("'", "\\'") for b in (COMPLETION, RESPONSE, MESSAGE))
    conf = work / "nginx.conf"
    temp = {name: work / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for d in temp.values():
        d.mkdir()
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    client_max_body_size 64m;  # bench_long_prompt.py posts million-token bodies
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
        location = /v1/responses {{
            default_type application/json;
            return 200 '{response}';
        }}
        location = /v1/messages {{
            default_type application/json;
            return 200 '{message}';
        }}
        location = /v1/traces {{  # an OTLP/HTTP sink for bench_tracing.py: takes every export, logs one line each
            access_log {work}/otlp-exports.log;
            return 200 '';
        }}
    }}
}}
""")
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stdout=subprocess.DEVNULL, stderr=open(work / "nginx.out", "wb"))
    wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST", json=REQUEST)
    return proc, port


def start_gateway(work: Path, upstream_port: int, settings: dict[str, str], name: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    rules = work / "rules-off"
    rules.mkdir(exist_ok=True)
    (rules / "off.toml").write_text("[defaults]\ninject = false\nextract = false\n")  # memory off
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMGATE_", "OTEL_"))}
    env.update({"MEMGATE_" + k.upper(): v for k, v in settings.items()})
    env.update(extra_env or {})
    args = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}/v1",
            "--rules", str(rules), "--data-dir", str(work / f"data-{name}")]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(work / f"gateway-{name}.log", "wb"), stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)  # a loaded 2-core host can take a while to import LanceDB
    return proc, port


@dataclass
class Run:
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port: int, conc: int, duration: int, script: Path) -> Run:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    result = subprocess.run([WRK, "-t1", f"-c{conc}", f"-d{duration}s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, timeout=duration + 60)
    out = result.stdout
    if "Requests/sec:" not in out:
        raise RuntimeError(f"wrk failed against {url}:\n{out}{result.stderr}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(value) * UNITS[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(ms(latency["50"]), ms(latency["99"]), rps, errors + (int(non2xx.group(1)) if non2xx else 0))


def median_run(runs: list[Run]) -> Run:
    return Run(statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs),
               statistics.median(r.rps for r in runs), sum(r.errors for r in runs))


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]  # noqa: E731
    return get("VmRSS"), get("VmHWM")


def stop_all(procs: list[subprocess.Popen], work: Path) -> None:
    """Stop what a bench started, newest first (the first, nginx, by SIGQUIT: its graceful stop), and remove its work dir."""
    for proc in reversed(procs):
        proc.send_signal(signal.SIGTERM if proc is not procs[0] else signal.SIGQUIT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run (whole seconds: wrk takes no fractions)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--conc", default="1,64", help="comma-separated wrk connection counts")
    parser.add_argument("--variants", default="default", help=f"comma-separated gateway variants or 'all' ({', '.join(VARIANTS)})")
    args = parser.parse_args()
    missing = [name for name, path in (("nginx", NGINX), ("wrk", WRK)) if not path]
    if missing:
        print(f"bench_proxy: {' and '.join(missing)} not found. Install them first: apt-get update && apt-get install -y nginx wrk", file=sys.stderr)
        return 2
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    concs = [int(c) for c in args.conc.split(",")]

    work = Path(tempfile.mkdtemp(prefix="memgate-bench-"))
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(REQUEST)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer sk-bench-0000000000000000"\n'
    )
    procs: list[subprocess.Popen] = []
    try:
        nginx, nginx_port = start_nginx(work)
        procs.append(nginx)
        targets: list[tuple[str, int, int | None]] = [("direct (nginx)", nginx_port, None)]
        for name in names:
            proc, port = start_gateway(work, nginx_port, VARIANTS[name], name)
            procs.append(proc)
            targets.append((f"gateway {name}", port, proc.pid))
        samples: dict[tuple[str, int], list[Run]] = {}
        for conc in concs:
            for label, port, _ in targets:  # warm-up: pools filled, code paths hot
                wrk(port, conc, 1, script)
            for _ in range(args.repeat):  # interleaved, so drift on the noisy host hits all targets alike
                for label, port, _ in targets:
                    samples.setdefault((label, conc), []).append(wrk(port, conc, args.duration, script))
        print(f"\nmemgate proxy overhead: wrk -t1, {args.duration:g}s x {args.repeat} runs per cell (median), memory off, one worker; "
              f"upstream nginx 1 worker, canned JSON ({len(json.dumps(COMPLETION))} B)")
        header = f"{'target':<26} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'added p50':>10} {'added p99':>10} {'errors':>6} {'RSS MB':>12}"
        print(header)
        print("-" * len(header))
        for conc in concs:
            direct = median_run(samples[("direct (nginx)", conc)])
            for label, _, pid in targets:
                run = median_run(samples[(label, conc)])
                added = ("", "") if pid is None else (f"{run.p50_ms - direct.p50_ms:+.3f}", f"{run.p99_ms - direct.p99_ms:+.3f}")
                rss = "" if pid is None else "{:.0f} (peak {:.0f})".format(*rss_mb(pid))
                print(f"{label:<26} {conc:>4} {run.p50_ms:>8.3f} {run.p99_ms:>8.3f} {run.rps:>9.0f} {added[0]:>10} {added[1]:>10} {run.errors:>6} {rss:>12}")
        print("\ntargets: added p50 <= 1 ms at conc 1; >= 800 req/s at conc 64 (gateway default)")
    finally:
        stop_all(procs, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
