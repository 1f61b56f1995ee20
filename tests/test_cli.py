"""The `memgate` command line: help for every command, and settings from memgate.toml, MEMGATE_*
env vars and flags, each overriding the one before."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.main import build_parser, main
from gateway.config import OPTIONS

from .harness import ROOT


def memgate(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMGATE_")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=60)


def command_paths() -> list[list[str]]:
    """Every command and sub-command the real entry point registers (main() adds the admin twins)."""
    from gateway.cli import admin as cli_admin

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append(prefix + [name])
                    out.extend(walk(sub, prefix + [name]))
        return out

    return walk(build_parser([cli_admin.register]), [])


def test_memgate_help_lists_the_commands() -> None:
    result = memgate("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: memgate")
    for command in ("serve", "rules"):
        assert command in result.stdout


def test_running_without_a_command_is_a_usage_error() -> None:
    result = memgate()
    assert result.returncode == 2
    assert "usage: memgate" in result.stderr


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p))
def test_every_command_has_working_help(path: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: memgate " + " ".join(path))
    assert "-h, --help" in out


def test_serve_help_shows_every_flag_with_its_env_var_and_default(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    entries = [" ".join(entry.split()) for entry in re.split(r"\n  (?=-)", out)]
    for option in OPTIONS:
        line = next((e for e in entries if e.startswith(option.flag + " ")), "")
        assert line, option.flag
        assert f"env {option.env}" in line
        if option.alias:
            assert option.alias in line
        if option.secret:
            assert "default" not in line  # never echo a secret's value
        else:
            assert f"default {option.default!r}" in line


# -- settings precedence: defaults < memgate.toml < MEMGATE_* < flags ---------------------------------


@pytest.fixture
def three_rule_dirs(tmp_path: Path) -> dict[str, Path]:
    """Rules dirs whose [defaults] top_k tells which one was loaded."""
    dirs = {}
    for name, top_k in (("toml", 1), ("env", 2), ("flag", 3), ("explicit", 4)):
        d = tmp_path / name
        d.mkdir()
        (d / "r.toml").write_text(f"[defaults]\ntop_k = {top_k}\n")
        dirs[name] = d
    (tmp_path / "memgate.toml").write_text(f'rules = "{dirs["toml"]}"\n')
    (tmp_path / "other.toml").write_text(f'rules = "{dirs["explicit"]}"\n')
    return dirs


def loaded_top_k(cwd: Path, *args: str, env: dict[str, str] | None = None) -> int:
    result = memgate("rules", "explain", "--model", "m", *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["settings"]["top_k"]


def test_memgate_toml_in_the_working_directory_is_read(three_rule_dirs: dict[str, Path], tmp_path: Path) -> None:
    assert loaded_top_k(tmp_path) == 1


def test_env_var_overrides_memgate_toml(three_rule_dirs: dict[str, Path], tmp_path: Path) -> None:
    assert loaded_top_k(tmp_path, env={"MEMGATE_RULES": str(three_rule_dirs["env"])}) == 2


def test_flag_overrides_env_var_and_memgate_toml(three_rule_dirs: dict[str, Path], tmp_path: Path) -> None:
    assert loaded_top_k(tmp_path, "--rules", str(three_rule_dirs["flag"]), env={"MEMGATE_RULES": str(three_rule_dirs["env"])}) == 3


def test_config_flag_and_env_pick_another_file(three_rule_dirs: dict[str, Path], tmp_path: Path) -> None:
    assert loaded_top_k(tmp_path, "--config", str(tmp_path / "other.toml")) == 4
    assert loaded_top_k(tmp_path, env={"MEMGATE_CONFIG": str(tmp_path / "other.toml")}) == 4


def test_unknown_setting_in_memgate_toml_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "memgate.toml").write_text('uptream_url = "http://x"\n')
    result = memgate("rules", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert "memgate.toml" in result.stderr and "uptream_url" in result.stderr and "Traceback" not in result.stderr


def test_badly_typed_env_var_is_refused_by_name(tmp_path: Path) -> None:
    result = memgate("rules", "check", cwd=tmp_path, env={"MEMGATE_PORT": "eighty"})
    assert result.returncode == 1
    assert "MEMGATE_PORT" in result.stderr and "Traceback" not in result.stderr


def test_invalid_setting_value_stops_serve_before_it_listens(tmp_path: Path) -> None:
    result = memgate("serve", "--tenant-mode", "sometimes", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 1
    assert "tenant_mode" in result.stderr and "Traceback" not in result.stderr


def test_the_memgate_command_is_the_cli_entry_point() -> None:
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["memgate"].partition(":")
    assert getattr(importlib.import_module(module), function) is main
