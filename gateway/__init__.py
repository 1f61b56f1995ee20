"""memgate: an OpenAI-compatible memory proxy gateway."""

from __future__ import annotations

from typing import Any

from gateway.config import Settings, load_settings

__all__ = ["Settings", "build_app", "load_settings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy: `build_app` pulls in LanceDB (seconds to import), which CLI commands that only talk
    # HTTP (`memgate memories ...`, `rules check`) never need.
    if name == "build_app":
        from gateway.app import build_app

        return build_app
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
