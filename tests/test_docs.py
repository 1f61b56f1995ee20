"""Documentation that cannot drift (Datasette's docs test, for memgate): every setting, metric and
rule field the code defines is in README.md, and the generated tables there are current."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from gateway.config import OPTIONS
from gateway.rules import Match, RuleSettings

from .harness import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "scripts"))
from gen_config_table import exposed_metrics  # noqa: E402


@pytest.mark.parametrize("heading", ["## Configuration reference", "## Metrics reference", "## Rules reference"])
def test_readme_has_the_reference_section(heading: str) -> None:
    assert f"\n{heading}\n" in README


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_setting_is_documented_with_flag_and_env_var(option) -> None:
    assert f"`{option.flag}`" in README
    assert f"`{option.env}`" in README


@pytest.mark.parametrize("name", [m[0] for m in exposed_metrics()])
def test_every_metric_is_documented(name: str) -> None:
    assert f"`{name}`" in README


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(RuleSettings)] + [f"match.{f.name}" for f in dataclasses.fields(Match)])
def test_every_rule_field_is_documented(field: str) -> None:
    assert f"`{field.removeprefix('match.')}`" in README


def test_generated_tables_in_readme_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_table.py"), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_test_the_guarantees_name_exists() -> None:
    section = README.split("\n## Guarantees\n", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", section)
    assert len(named) >= 20
    for path, name in named:
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), f"{path}::{name} is named in README's Guarantees but does not exist"
