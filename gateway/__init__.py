"""memgate: an OpenAI-compatible memory proxy gateway."""

from __future__ import annotations

from .app import build_app
from .config import Settings, load_settings

__all__ = ["Settings", "build_app", "load_settings"]
__version__ = "0.1.0"
