"""memory/prefetch.py: which users the start-up prefetch warms, from the store's activity columns."""

from __future__ import annotations

import pyarrow as pa
import pytest

from gateway.config import ConfigError, Settings
from gateway.memory.prefetch import most_recent


def activity(*rows: tuple[str, str, float, float | None]) -> pa.Table:
    tenants, users, written, used = zip(*rows)
    return pa.table({"tenant": list(tenants), "user_id": list(users), "updated_at": pa.array(written, pa.float64()),
                     "last_used_at": pa.array(used, pa.float64())})


def test_users_are_ordered_by_their_latest_write_or_use_newest_first() -> None:
    rows = activity(("t", "old-writer", 100.0, None), ("t", "recent-reader", 50.0, 900.0), ("t", "writer", 500.0, None),
                    ("t", "old-writer", 200.0, 300.0))
    assert most_recent(rows, 10) == [("t", "recent-reader"), ("t", "writer"), ("t", "old-writer")]


def test_at_most_limit_users_and_the_same_user_id_in_two_tenants_is_two_users() -> None:
    rows = activity(("a", "u", 10.0, None), ("b", "u", 20.0, None), ("c", "v", 5.0, None))
    assert most_recent(rows, 2) == [("b", "u"), ("a", "u")]
    assert most_recent(rows, 0) == [] and most_recent(activity(("a", "u", 1.0, None)).slice(0, 0), 5) == []


@pytest.mark.parametrize("name, value", [("prefetch_users", -1), ("prefetch_seconds", -0.5), ("prefetch_seconds", float("nan"))])
def test_negative_or_nan_prefetch_bounds_are_refused(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(**{name: value})
