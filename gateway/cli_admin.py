"""CLI twins of the admin API (filled in by the memory issues)."""

from __future__ import annotations

import argparse


class CommandError(Exception):
    """A CLI command failed; the message is printed as one line and the exit code is 1."""


def register(sub: argparse._SubParsersAction) -> None:
    return None
