"""Starts gateways for the tests by forking an interpreter that has already imported the gateway.

Importing LanceDB, pyarrow, numpy and uvicorn takes most of a gateway's start-up (about 2.4 of 2.9 s
on an idle 2-core machine); a test session starts well over a hundred gateways. This process pays
for the imports once, then forks one child per gateway, which runs exactly what `python -m gateway`
runs (`sys.exit(main(argv))`) with the gateway's own environment, working directory and log file.

One JSON request per line on stdin, one JSON answer per line on stdout:
  {"op": "spawn", "argv": [...], "env": {...}, "cwd": "...", "log": "..."}  -> {"pid": N}
  {"op": "wait", "pid": N, "timeout": T}  -> {"returncode": R or null}  (null: still running after T s)
End of input terminates the children still running, then this process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings

import gateway.app  # noqa: F401  (the imports are the point: the children inherit them)
import gateway.cli.main
import gateway.server  # noqa: F401

POLL_SECONDS = 0.01

# LanceDB resets its async runtime in a forked child and warns that state mid-operation at the fork
# could deadlock: this process never opens a table, so nothing of LanceDB's is ever mid-operation here.
warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)


def run_gateway(argv: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In the child: become `python -m gateway <argv>`. Never returns (SystemExit ends the process as usual)."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [os.path.join(os.path.dirname(gateway.__file__), "__main__.py"), *argv]  # as `python -m gateway` sets it
    sys.exit(gateway.cli.main.main(argv))


def reap(pid: int, timeout: float, exited: dict[int, int]) -> int | None:
    deadline = time.monotonic() + timeout
    while pid not in exited:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            exited[pid] = os.waitstatus_to_exitcode(status)
        elif time.monotonic() >= deadline:
            return None
        else:
            time.sleep(POLL_SECONDS)
    return exited[pid]


def serve() -> None:
    children: set[int] = set()
    exited: dict[int, int] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                run_gateway(request["argv"], request["env"], request["cwd"], request["log"])
            children.add(pid)
            answer: dict[str, object] = {"pid": pid}
        else:
            answer = {"returncode": reap(request["pid"], request["timeout"], exited)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for pid in children - exited.keys():  # the test process went away: take its gateways with it
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        reap(pid, 15, exited)


if __name__ == "__main__":
    serve()
