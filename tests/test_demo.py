"""`memgate demo` as a newcomer runs it: one command, offline, memory visibly working in seconds."""

from __future__ import annotations

import subprocess
import sys
import time

from .harness import ROOT


def test_memgate_demo_shows_extraction_and_recall_offline_in_under_30_seconds() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gateway", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < 30, f"demo took {elapsed:.1f}s"

    extracted, _, later = out.partition("== 3.")
    extracted = extracted.partition("== 2.")[2]
    # What the heuristic extractor learned, printed per user.
    assert "alice: User prefers Terraform over CloudFormation" in extracted
    assert "bob: User is vegetarian" in extracted
    assert "bob: User lives in Lisbon" in extracted

    # Each later request's memory block quotes that user's facts and nothing of the other user's.
    alice, _, bob = later.partition("bob asks:")
    assert "<memgate-memories>" in alice and "<memgate-memories>" in bob
    assert '"User prefers Terraform over CloudFormation"' in alice
    assert "vegetarian" not in alice and "Lisbon" not in alice
    assert '"User is vegetarian"' in bob and '"User lives in Lisbon"' in bob
    assert "Terraform" not in bob and "PST" not in bob
    assert "demo finished: memory works" in out
