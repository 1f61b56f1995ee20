"""The Dockerfile is right by construction, and its install script's check runs here.

No Docker engine runs on these machines: the Dockerfile is parsed and held to what the image must
be (slim two-stage build, non-root, healthcheck, volumes, every COPY source present), and the
`docker/install.sh check` step the image runs at build time runs against this checkout.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import OPTIONS
from gateway.memory.static_model import SHIPPED_MODEL_DIR

from .harness import ROOT

INSTALL = ROOT / "docker" / "install.sh"


@dataclass
class Instruction:
    name: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments may sit inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        name, _, args = (pending + line).partition(" ")
        out.append(Instruction(name.upper(), args.strip(), start))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions per build stage (each starts with its FROM); global ARGs before the first FROM dropped."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.name == "FROM":
            out.append([ins])
        elif out:
            out[-1].append(ins)
    return out


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.name == "ENV":
            for key, value in re.findall(r"(\w+)=(\S*)", ins.args):
                env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def copy_sources(ins: Instruction) -> list[str]:
    parts = [p for p in ins.args.split() if not p.startswith("--")]
    return parts[:-1]


def dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def test_image_is_a_builder_stage_and_a_slim_python_runtime(dockerfile: list[Instruction]) -> None:
    args = {m.group(1): m.group(2) for ins in dockerfile if ins.name == "ARG" for m in [re.match(r"(\w+)=(\S+)", ins.args)] if m}
    builder, runtime = stages(dockerfile)
    assert builder[0].args.endswith(" AS builder")
    base = runtime[0].args.split()[0]
    assert re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base) == "python:3.11-slim"
    # Only the venv leaves the builder; the model ships in the package, so nothing installs torch.
    copied = [ins for ins in runtime if ins.name == "COPY" and "--from=builder" in ins.args]
    assert copied and all(copy_sources(ins) == ["/opt/memgate"] for ins in copied)
    assert not [ins.line for ins in dockerfile if "torch" in ins.args.lower() or "[local]" in ins.args]


def test_runtime_runs_as_a_non_root_user_before_anything_is_served(dockerfile: list[Instruction]) -> None:
    runtime = stages(dockerfile)[-1]
    names = [ins.name for ins in runtime]
    user = [ins.args for ins in runtime if ins.name == "USER"]
    assert user and user[-1] not in ("root", "0") and not user[-1].startswith("0:")
    assert names.index("USER") < names.index("CMD") and names.index("USER") < names.index("HEALTHCHECK")
    created = " ".join(ins.args for ins in runtime if ins.name == "RUN")
    assert "useradd" in created and user[-1] in created


def test_serve_command_healthcheck_port_and_volumes_agree_with_the_settings(dockerfile: list[Instruction]) -> None:
    runtime = stages(dockerfile)[-1]
    env = env_of(runtime)
    (cmd,) = [exec_form(ins.args) for ins in runtime if ins.name == "CMD"]
    assert cmd == ["memgate", "serve", "--host", "0.0.0.0"]
    (health,) = [ins.args for ins in runtime if ins.name == "HEALTHCHECK"]
    probe = exec_form(health[health.index("CMD ") + 4:])
    assert probe[0] == "python" and "/healthz" in probe[-1] and "MEMGATE_PORT" in probe[-1]
    assert "--interval=" in health and "--timeout=" in health
    (volumes,) = [exec_form(ins.args) for ins in runtime if ins.name == "VOLUME"]
    assert sorted(volumes) == sorted([env["MEMGATE_DATA_DIR"], env["MEMGATE_RULES"]]) == ["/data", "/etc/memgate/rules"]
    assert [ins.args for ins in runtime if ins.name == "EXPOSE"] == [env["MEMGATE_PORT"]] == ["8080"]
    assert env["MEMGATE_HOST"] == "0.0.0.0"
    # Every MEMGATE_* variable the image sets is a real setting or one of install.sh's own.
    settings_env = {option.env for option in OPTIONS}
    script_env = set(re.findall(r"\$\{?(MEMGATE_\w+)", INSTALL.read_text()))
    for stage in stages(dockerfile):
        unknown = [k for k in env_of(stage) if k.startswith("MEMGATE_") and k not in settings_env | script_env]
        assert not unknown, f"Dockerfile sets MEMGATE_ variables no code reads: {unknown}"


def test_every_copy_source_is_in_the_build_context(dockerfile: list[Instruction]) -> None:
    for ins in dockerfile:
        if ins.name != "COPY" or "--from=" in ins.args:
            continue
        for source in copy_sources(ins):
            assert (ROOT / source).exists(), f"line {ins.line}: COPY source {source} is missing"
            assert not dockerignored(source), f"line {ins.line}: COPY source {source} is excluded by .dockerignore"


def test_every_install_step_the_dockerfile_runs_is_in_the_script(dockerfile: list[Instruction]) -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)]).returncode == 0
    script = INSTALL.read_text()
    steps = [m for ins in dockerfile if ins.name == "RUN" for m in re.findall(r"memgate-install (\w+)", ins.args)]
    assert set(steps) == {"runtime", "check"}
    for step in steps:
        assert re.search(rf"^\s*{step}\) shift; cmd_{step} ", script, re.M), f"install.sh has no `{step}` step"


# -- the image's own check, run on this checkout -----------------------------------------------------


def run_check(*args: str, pythonpath: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEMGATE_PYTHON": sys.executable, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(["bash", str(INSTALL), "check", *args], cwd=pythonpath, env=env, capture_output=True, text=True, timeout=120)


def test_install_check_passes_with_the_shipped_model() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("check: ok: memgate") and str(SHIPPED_MODEL_DIR) in result.stdout


def test_install_check_fails_clearly_when_the_package_lacks_its_model(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "gateway", tmp_path / "gateway", ignore=shutil.ignore_patterns("model", "__pycache__"))
    result = run_check(pythonpath=tmp_path)
    assert result.returncode != 0
    assert "check: the package has no embedding model at" in result.stderr and str(tmp_path) in result.stderr
