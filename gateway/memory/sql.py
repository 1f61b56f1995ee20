"""The SQL filters of LanceDB queries: the one place user-supplied text enters a filter, always as a quoted literal."""

from __future__ import annotations

from typing import Iterable


def sql_literal(value: str) -> str:
    """A SQL string literal: the one place user-supplied text enters a filter."""
    if not isinstance(value, str):
        raise TypeError(f"filter value must be a string, not {type(value).__name__}")
    return "'" + value.replace("'", "''") + "'"


def scope(tenant: str, user: str | None = None) -> str:
    where = f"tenant = {sql_literal(tenant)}"
    return where if user is None else f"{where} AND user_id = {sql_literal(user)}"


def one_of(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


__all__ = ["sql_literal", "scope", "one_of"]
