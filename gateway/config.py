"""Settings: one frozen object built from defaults, `memgate.toml`, `MEMGATE_*` env vars and flags.

This is the only module that reads the environment. Every option is declared once in `OPTIONS`;
the CLI, the env-var lookup and the docs test are all generated from that table.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class Option:
    name: str  # settings attribute; flag is --name-with-dashes, env is MEMGATE_NAME
    type: type
    default: Any
    help: str
    secret: bool = False  # never echoed back (help shows no default, logs never see it)
    alias: str = ""  # a shorter flag, e.g. --upstream

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "MEMGATE_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "127.0.0.1", "interface to listen on"),
    Option("port", int, 8080, "port to listen on"),
    Option("upstream_url", str, "https://api.openai.com/v1", "OpenAI-compatible upstream base URL", alias="--upstream"),
    Option("data_dir", str, "./memgate-data", "directory for the LanceDB table and SQLite files"),
    Option("store_uri", str, "", "LanceDB URI for memories (default: <data-dir>/lancedb); s3://, gs://, az:// work"),
    Option("rules", str, "./rules", "directory of *.toml injection rules"),
    Option("admin_token", str, "", "bearer token for /admin/v1; the admin API is off when empty", secret=True),
    Option("tenant_mode", str, "key", "'key': tenant is a fingerprint of the caller's API key (none or a placeholder: memory off); 'none': one tenant 'default' for everyone, only behind your own authentication"),
    Option("connect_timeout", float, 5.0, "seconds to open an upstream connection"),
    Option("read_timeout", float, 600.0, "seconds to wait for upstream bytes (between stream chunks too)"),
    Option("write_timeout", float, 60.0, "seconds to send the request upstream"),
    Option("pool_timeout", float, 10.0, "seconds to wait for a free pooled upstream connection"),
    Option("max_connections", int, 512, "upstream connection pool size; streamed uploads (bodies over --max-body-bytes) may hold a quarter of it"),
    Option("max_body_bytes", int, 16 * 1024 * 1024, "largest chat request body accepted (413 above); other /v1 bodies up to it are read whole before going upstream"),
    Option("client_header_timeout", float, 30.0, "seconds a client may take to send its request headers; then the connection is closed"),
    Option("client_body_timeout", float, 30.0, "seconds a client may pause while sending a request body; then it gets a 408 and its upstream request is cancelled"),
    # Chosen by bench/bench_proxy.py; kept as settings so the choice can be re-measured anywhere.
    Option("loop", str, "uvloop", "event loop: 'uvloop' or 'asyncio'"),
    Option("http", str, "httptools", "HTTP/1.1 server parser: 'httptools' or 'h11'"),
    Option("upstream_transport", str, "aiohttp", "upstream transport under httpx: 'aiohttp' (httpx-aiohttp) or 'httpx' (httpx's own)"),
    Option("log_level", str, "info", "debug, info, warning or error"),
    Option("embedder", str, "local", "'local' (offline static MiniLM distillation), 'minilm' (full MiniLM), 'openai' (upstream /v1/embeddings)"),
    Option("model_cache", str, "", "where the distilled local embedding model is kept (default ~/.cache/memgate)"),
    Option("embedding_model", str, "text-embedding-3-small", "model name for the 'openai' embedder"),
    Option("hot_users", int, 2048, "users kept in the in-process hot tier"),
    Option("store_cache_mb", int, 256, "memory for LanceDB's index and metadata caches (its own default lets them grow to 7 GB)"),
    Option("extractor", str, "heuristic", "default extractor: 'heuristic' (offline) or 'llm' (upstream structured output)"),
    Option("extraction_model", str, "gpt-4o-mini", "model for the 'llm' extractor"),
    Option("extraction_api_key", str, "", "key for the 'llm' extractor; else the caller's key, held in memory only", secret=True),
    Option("extraction_workers", int, 2, "extraction worker tasks"),
    Option("extraction_retry_seconds", float, 0.5, "first retry delay of a failed extraction batch; doubles each attempt, dead letter after 5"),
    Option("queue_max", int, 10000, "pending extraction jobs kept; new jobs are dropped (and counted) past this; also the most dead letters kept"),
    Option("max_job_messages", int, 64, "messages of one exchange kept in its extraction job: the most recent, the older ones are cut (and counted)"),
    Option("max_job_bytes", int, 64 * 1024, "UTF-8 bytes of message text kept in one extraction job: the most recent, the older ones are cut (and counted)"),
    Option("max_llm_calls_per_job", int, 8, "upstream calls the 'llm' extractor makes per job (extraction and reconcile together); past it the oldest text is not read"),
    Option("dead_letter_retention", float, 7 * 86400.0, "seconds a dead-lettered extraction job is kept in SQLite for inspection before it is purged (and counted)"),
    Option("max_memories_per_user", int, 5000, "per-user cap; the hygiene job evicts the least useful above it"),
    Option("hygiene_interval", float, 3600.0, "seconds between hygiene passes (TTL, expiry, cap) and compaction"),
)

_OPTION_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_url: str = "https://api.openai.com/v1"
    data_dir: str = "./memgate-data"
    store_uri: str = ""
    rules: str = "./rules"
    admin_token: str = field(default="", repr=False)
    tenant_mode: str = "key"
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    write_timeout: float = 60.0
    pool_timeout: float = 10.0
    max_connections: int = 512
    max_body_bytes: int = 16 * 1024 * 1024
    client_header_timeout: float = 30.0
    client_body_timeout: float = 30.0
    loop: str = "uvloop"
    http: str = "httptools"
    upstream_transport: str = "aiohttp"
    log_level: str = "info"
    embedder: str = "local"
    model_cache: str = ""
    embedding_model: str = "text-embedding-3-small"
    hot_users: int = 2048
    store_cache_mb: int = 256
    extractor: str = "heuristic"
    extraction_model: str = "gpt-4o-mini"
    extraction_api_key: str = field(default="", repr=False)
    extraction_workers: int = 2
    extraction_retry_seconds: float = 0.5
    queue_max: int = 10000
    max_job_messages: int = 64
    max_job_bytes: int = 64 * 1024
    max_llm_calls_per_job: int = 8
    dead_letter_retention: float = 7 * 86400.0
    max_memories_per_user: int = 5000
    hygiene_interval: float = 3600.0
    # From memgate.toml only: `[tenants]` maps key fingerprints (k_...) to stable tenant names.
    tenants: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tenant_mode not in ("key", "none"):
            raise ConfigError(f"tenant_mode must be 'key' or 'none', not {self.tenant_mode!r}")
        if self.embedder not in ("local", "minilm", "openai"):
            raise ConfigError(f"embedder must be 'local', 'minilm' or 'openai', not {self.embedder!r}")
        if self.extractor not in ("heuristic", "llm"):
            raise ConfigError(f"extractor must be 'heuristic' or 'llm', not {self.extractor!r}")
        for name, allowed in (("loop", ("uvloop", "asyncio")), ("http", ("httptools", "h11")), ("upstream_transport", ("aiohttp", "httpx"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.max_body_bytes <= 0 or self.max_connections <= 0:
            raise ConfigError("max_body_bytes and max_connections must be positive")
        if self.client_header_timeout <= 0 or self.client_body_timeout <= 0:
            raise ConfigError("client_header_timeout and client_body_timeout must be positive")
        for name in ("max_job_messages", "max_job_bytes", "max_llm_calls_per_job", "dead_letter_retention"):
            if not getattr(self, name) > 0:  # `not >`: NaN fails too
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")

    @property
    def upstream_base(self) -> str:
        return self.upstream_url.rstrip("/")

    @property
    def lancedb_uri(self) -> str:
        return self.store_uri or str(Path(self.data_dir) / "lancedb")

    @property
    def model_cache_dir(self) -> Path:
        return Path(self.model_cache).expanduser() if self.model_cache else Path.home() / ".cache" / "memgate"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.data_dir) / "memgate.sqlite3"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


class ConfigError(ValueError):
    """A setting has a value memgate cannot run with."""


def _coerce(option: Option, value: Any, source: str) -> Any:
    wrong = ConfigError(f"{source}: {option.name} must be {option.type.__name__}, got {value!r}")
    if option.type in (int, float) and isinstance(value, bool):  # bool is an int subclass: `port = true` is a mistake
        raise wrong
    if option.type is int and isinstance(value, float):  # int(8080.9) would silently truncate
        raise wrong
    if isinstance(value, option.type):
        return value
    try:
        if option.type is bool:
            return str(value).lower() in ("1", "true", "yes", "on")
        return option.type(value)
    except (TypeError, ValueError):
        raise wrong from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Merge, lowest first: defaults, the config file, MEMGATE_* env vars, explicit flags."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or env.get("MEMGATE_CONFIG")
    if path is None and Path("memgate.toml").is_file():
        path = "memgate.toml"
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        tenants = data.pop("tenants", {})
        if not isinstance(tenants, dict) or not all(isinstance(v, str) for v in tenants.values()):
            raise ConfigError(f"{path}: [tenants] must map fingerprints to names")
        values["tenants"] = dict(tenants)
        for key, value in data.items():
            option = _OPTION_BY_NAME.get(key.replace("-", "_"))
            if option is None:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[option.name] = _coerce(option, value, path)
    for option in OPTIONS:
        if option.env in env:
            values[option.name] = _coerce(option, env[option.env], option.env)
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = _coerce(_OPTION_BY_NAME[name], value, _OPTION_BY_NAME[name].flag)
    return Settings(**values)
