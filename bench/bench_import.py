"""Export and import throughput through the CLI against a real gateway (`python -m gateway serve`).

    python bench/bench_import.py                 # 5000 memories over 50 users
    python bench/bench_import.py --memories 20000

Rows: `import (re-embed)` loads JSONL without vectors (every text embedded by the local embedder),
`export --vectors` writes them back out, `import (vectors)` loads that file into a second tenant's
fresh gateway, reusing the vectors. Wall time of the CLI command (batches of 500), memories/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.harness import ADMIN_TOKEN, Gateway  # noqa: E402

WORDS = "coffee Lisbon Terraform cats marathon vegetarian Neovim Portuguese AWS chess bread jazz".split()


def cli(gw: Gateway, *args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "gateway", *args, "--url", gw.url], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "MEMGATE_ADMIN_TOKEN": ADMIN_TOKEN}, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=5000)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    upstream = FakeUpstream().start()
    with tempfile.TemporaryDirectory(prefix="memgate-bench-import-") as tmp:
        root = Path(tmp)
        plain = root / "plain.jsonl"
        now = time.time()
        with plain.open("w") as f:
            for i in range(args.memories):
                text = f"I like {WORDS[i % len(WORDS)]} number {i} and {WORDS[(i * 7) % len(WORDS)]}"
                f.write(json.dumps({"id": f"m{i}", "tenant": "bench", "user_id": f"u{i % args.users}", "text": text, "created_at": now - i}) + "\n")
        rows = []
        first = Gateway(upstream.url, root / "a", production_rules=True).start()
        try:
            rows.append(("import (re-embed)", cli(first, "import", str(plain))))
            exported = root / "vectors.jsonl"
            rows.append(("export --vectors", cli(first, "export", "--vectors", "-o", str(exported))))
        finally:
            first.stop()
        second = Gateway(upstream.url, root / "b", production_rules=True).start()
        try:
            rows.append(("import (vectors)", cli(second, "import", str(exported))))
        finally:
            second.stop()
    upstream.stop()
    print(f"{args.memories} memories, {args.users} users, CLI wall time")
    print(f"{'step':<20} {'seconds':>8} {'memories/s':>11}")
    for name, seconds in rows:
        print(f"{name:<20} {seconds:>8.2f} {args.memories / seconds:>11.0f}")


if __name__ == "__main__":
    main()
