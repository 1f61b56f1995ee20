"""Settings: one frozen object built from defaults, `memgate.toml`, `MEMGATE_*` env vars and flags.

The gateway's settings are read from the environment here only; the admin CLI reads `MEMGATE_URL` and
`MEMGATE_ADMIN_TOKEN` as a client, and other modules read other programs' variables (tiktoken's cache,
`MALLOC_ARENA_MAX`). Every setting is declared once, as a `Settings` field;
`OPTIONS`, and from it the CLI, the env-var lookup and the README table, are derived from those fields.
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


def setting(default: Any, help: str, secret: bool = False, alias: str = "") -> Any:
    """A `Settings` field with the help, secrecy and short flag that `OPTIONS` is built from."""
    return field(default=default, repr=not secret, metadata={"help": help, "secret": secret, "alias": alias})


# Settings that only make sense above zero (a size, a count, a timeout).
POSITIVE = (
    "max_body_bytes", "max_connections", "client_header_timeout", "client_body_timeout",
    "max_job_messages", "max_job_bytes", "max_llm_calls_per_job", "dead_letter_retention", "workers",
)
# The llm extractor's structured-output modes, in the order `auto` tries them (gateway/extraction/output_modes.py).
OUTPUT_MODES = ("json_schema", "json_object", "tools", "prompt")


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "interface to listen on")
    port: int = setting(8080, "port to listen on")
    upstream_url: str = setting("https://api.openai.com/v1", "OpenAI-compatible upstream base URL", alias="--upstream")
    data_dir: str = setting("./memgate-data", "directory for the LanceDB table and SQLite files")
    store_uri: str = setting("", "LanceDB URI for memories (default: <data-dir>/lancedb); s3://, gs://, az:// work")
    rules: str = setting("./rules", "directory of *.toml injection rules")
    admin_token: str = setting("", "bearer token for /admin/v1; the admin API is off when empty", secret=True)
    tenant_mode: str = setting("key", "'key': tenant is a fingerprint of the caller's API key (none or a placeholder: memory off); 'none': one tenant 'default' for everyone, only behind your own authentication")
    connect_timeout: float = setting(5.0, "seconds to open an upstream connection")
    read_timeout: float = setting(600.0, "seconds to wait for upstream bytes (between stream chunks too)")
    write_timeout: float = setting(60.0, "seconds to send the request upstream")
    pool_timeout: float = setting(10.0, "seconds to wait for a free pooled upstream connection")
    max_connections: int = setting(512, "upstream connection pool size; streamed uploads (bodies over --max-body-bytes) may hold a quarter of it")
    max_body_bytes: int = setting(16 * 1024 * 1024, "largest chat request body accepted (413 above); other /v1 bodies up to it are read whole before going upstream")
    client_header_timeout: float = setting(30.0, "seconds a client may take to send its request headers; then the connection is closed")
    client_body_timeout: float = setting(30.0, "seconds a client may pause while sending a request body; then it gets a 408 and its upstream request is cancelled")
    # Chosen by bench/bench_proxy.py; kept as settings so the choice can be re-measured anywhere.
    loop: str = setting("uvloop", "event loop: 'uvloop' or 'asyncio'")
    http: str = setting("httptools", "HTTP/1.1 server parser: 'httptools' or 'h11'")
    upstream_transport: str = setting("aiohttp", "upstream transport under httpx: 'aiohttp' (httpx-aiohttp) or 'httpx' (httpx's own)")
    log_level: str = setting("info", "debug, info, warning or error")
    embedder: str = setting("local", "'local' (offline static MiniLM distillation), 'minilm' (full MiniLM), 'openai' (upstream /v1/embeddings)")
    model_cache: str = setting("", "where `memgate prepare-model` rebuilds the local embedding model (default ~/.cache/memgate); serving uses the copy shipped in the package")
    embedding_model: str = setting("text-embedding-3-small", "model name for the 'openai' embedder")
    hot_users: int = setting(2048, "users kept in the in-process hot tier")
    store_cache_mb: int = setting(256, "memory for LanceDB's index and metadata caches (its own default lets them grow to 7 GB)")
    extractor: str = setting("heuristic", "default extractor: 'heuristic' (offline) or 'llm' (upstream structured output)")
    extraction_model: str = setting("gpt-4o-mini", "model for the 'llm' extractor")
    llm_output_mode: str = setting(
        "auto", "how the 'llm' extractor asks for JSON: 'json_schema', 'json_object', 'tools' (function calling), 'prompt' (schema in the prompt, "
        "tolerant parsing), or 'auto': each in that order until one works, remembered per upstream and model"
    )
    extraction_api_key: str = setting("", "key for the 'llm' extractor; else the caller's key, held in memory only", secret=True)
    extraction_workers: int = setting(2, "extraction worker tasks")
    extraction_retry_seconds: float = setting(0.5, "first retry delay of a failed extraction batch; doubles each attempt, dead letter after 5")
    queue_max: int = setting(10000, "pending extraction jobs kept; new jobs are dropped (and counted) past this; also the most dead letters kept")
    max_job_messages: int = setting(64, "messages of one exchange kept in its extraction job: the most recent, the older ones are cut (and counted)")
    max_job_bytes: int = setting(64 * 1024, "UTF-8 bytes of message text kept in one extraction job: the most recent, the older ones are cut (and counted)")
    max_llm_calls_per_job: int = setting(8, "upstream calls the 'llm' extractor makes per job (extraction and reconcile together); past it the oldest text is not read")
    dead_letter_retention: float = setting(7 * 86400.0, "seconds a dead-lettered extraction job is kept in SQLite for inspection before it is purged (and counted)")
    max_memories_per_user: int = setting(5000, "per-user cap; the hygiene job evicts the least useful above it")
    max_episodes_per_user: int = setting(10000, "per-user cap on archival episodes (the user's own turns), counted apart from --max-memories-per-user; hygiene evicts the least useful above it")
    hygiene_interval: float = setting(3600.0, "seconds between hygiene passes (TTL, expiry, cap) and compaction")
    genai_provider_name: str = setting("", "gen_ai.provider.name on the upstream call's trace span; empty: known from the upstream host (openai, anthropic...), else the host")
    anthropic_upstream_url: str = setting("https://api.anthropic.com", "upstream of the Anthropic Messages API (/v1/messages), with or without /v1; 'upstream' sends it to --upstream-url")
    prefetch_users: int = setting(256, "users whose memories are loaded into the hot tier at start, most recently active first, before /readyz says ready (0: none; at most --hot-users)")
    prefetch_seconds: float = setting(10.0, "the longest the start-up prefetch may hold /readyz back; users not loaded by then load on their first request")
    workers: int = setting(1, "processes serving the port, each a replica on the shared store with its own queue (<data-dir>/worker-N above the first)")
    # From memgate.toml only: `[tenants]` maps key fingerprints (k_...) to stable tenant names.
    tenants: Mapping[str, str] = field(default_factory=dict)
    worker: int = 0  # which of `workers` processes this is (set by the server, never configured)

    def __post_init__(self) -> None:
        if self.tenant_mode not in ("key", "none"):
            raise ConfigError(f"tenant_mode must be 'key' or 'none', not {self.tenant_mode!r}")
        if self.embedder not in ("local", "minilm", "openai"):
            raise ConfigError(f"embedder must be 'local', 'minilm' or 'openai', not {self.embedder!r}")
        if self.extractor not in ("heuristic", "llm"):
            raise ConfigError(f"extractor must be 'heuristic' or 'llm', not {self.extractor!r}")
        if self.llm_output_mode not in ("auto", *OUTPUT_MODES):
            raise ConfigError(f"llm_output_mode must be one of auto, {', '.join(OUTPUT_MODES)}, not {self.llm_output_mode!r}")
        for name, allowed in (("loop", ("uvloop", "asyncio")), ("http", ("httptools", "h11")), ("upstream_transport", ("aiohttp", "httpx"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for name in POSITIVE:
            if not getattr(self, name) > 0:  # `not >`: NaN fails too
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("prefetch_users", "prefetch_seconds"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must not be negative, not {getattr(self, name)!r}")

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
        return self.worker_sqlite_path(self.worker)

    def worker_sqlite_path(self, worker: int) -> Path:
        """Each worker's own queue file; the first worker's is the single process's."""
        return Path(self.data_dir, *([f"worker-{worker}"] if worker else []), "memgate.sqlite3")

    @property
    def sibling_sqlite_paths(self) -> list[Path]:
        """The other workers' queue files on this machine (the admin queue routes cover them too)."""
        return [self.worker_sqlite_path(i) for i in range(self.workers) if i != self.worker]

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# `from __future__ import annotations` leaves field types as strings.
_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}

OPTIONS: tuple[Option, ...] = tuple(
    Option(f.name, _TYPES[str(f.type)], f.default, f.metadata["help"], f.metadata["secret"], f.metadata["alias"])
    for f in dataclasses.fields(Settings)
    if "help" in f.metadata
)
_OPTION_BY_NAME = {o.name: o for o in OPTIONS}


class ConfigError(ValueError):
    """A setting has a value memgate cannot run with."""


def _coerce(option: Option, value: Any, source: str) -> Any:
    wrong = ConfigError(f"{source}: {option.name} must be {option.type.__name__}, got {value!r}")
    if option.type in (int, float) and isinstance(value, bool):  # bool is an int subclass: `port = true` is a mistake
        raise wrong
    if option.type is int and isinstance(value, float) and not value.is_integer():  # int(8080.9) would truncate
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
