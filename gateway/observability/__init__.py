"""OpenTelemetry tracing, on only when the standard OTEL_* variables ask for it and the `otel` extra is
installed; off, every hook is a no-op and nothing of OpenTelemetry is imported."""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Mapping

from gateway.observability.off import NO_CALL, NoTracing, NoUpstreamCall

if TYPE_CHECKING:
    from gateway.config import Settings

__all__ = ["NO_CALL", "NoTracing", "NoUpstreamCall", "requested", "start_tracing"]

log = logging.getLogger("memgate.tracing")

INSTALL_HINT = 'pip install "memgate[otel]"'
PACKAGES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")


def requested(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set, and neither OTEL_SDK_DISABLED
    nor OTEL_TRACES_EXPORTER=none turns them off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def start_tracing(settings: Settings, env: Mapping[str, str] | None = None) -> NoTracing:
    """The tracing the environment asks for: OTLP over HTTP/protobuf, or off (with one log line saying
    why when the variables ask for something this install cannot do)."""
    env = os.environ if env is None else env
    if not requested(env):
        return NoTracing()
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    if protocol != "http/protobuf":
        log.warning("tracing is off: memgate exports OTLP over http/protobuf only, not %s (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)", protocol)
        return NoTracing()
    exporters = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if "otlp" not in [name.strip() for name in exporters.split(",")]:
        log.warning("tracing is off: memgate exports traces over OTLP only, not %s (set OTEL_TRACES_EXPORTER=otlp)", exporters)
        return NoTracing()
    if not all(_installed(name) for name in PACKAGES):
        log.warning("tracing is off: OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s)", INSTALL_HINT)
        return NoTracing()
    from gateway.observability.otel import OtelTracing

    tracing = OtelTracing.exporting(settings, env)
    log.info("tracing on: OTLP http/protobuf", extra={"capture_content": tracing.capture_content})
    return tracing


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
