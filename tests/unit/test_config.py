"""config.py: load_settings merges defaults < memgate.toml < MEMGATE_* env < flags; bad values are ConfigErrors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import OPTIONS, ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _no_stray_memgate_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings falls back to ./memgate.toml: run every test from an empty directory.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "memgate.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_file_env_or_flags() -> None:
    assert load_settings(env={}) == Settings()


def test_every_option_default_matches_the_settings_default() -> None:
    defaults = Settings()
    assert {o.name: o.default for o in OPTIONS} == {o.name: getattr(defaults, o.name) for o in OPTIONS}


def test_the_file_overrides_defaults(tmp_path: Path) -> None:
    assert load_settings(env={}, config_file=config(tmp_path, "port = 9000\n")).port == 9000


def test_env_overrides_the_file(tmp_path: Path) -> None:
    assert load_settings(env={"MEMGATE_PORT": "9100"}, config_file=config(tmp_path, "port = 9000\n")).port == 9100


def test_flags_override_env_and_file(tmp_path: Path) -> None:
    settings = load_settings({"port": 9200}, env={"MEMGATE_PORT": "9100"}, config_file=config(tmp_path, "port = 9000\n"))
    assert settings.port == 9200


def test_a_flag_left_as_none_does_not_override(tmp_path: Path) -> None:
    assert load_settings({"port": None}, env={"MEMGATE_PORT": "9100"}).port == 9100


def test_each_source_only_overrides_what_it_names(tmp_path: Path) -> None:
    settings = load_settings({"host": "0.0.0.0"}, env={"MEMGATE_LOG_LEVEL": "debug"}, config_file=config(tmp_path, "port = 9000\n"))
    assert (settings.host, settings.log_level, settings.port, settings.read_timeout) == ("0.0.0.0", "debug", 9000, 600.0)


def test_the_config_file_can_come_from_memgate_config(tmp_path: Path) -> None:
    assert load_settings(env={"MEMGATE_CONFIG": config(tmp_path, "port = 9300\n")}).port == 9300


def test_memgate_toml_in_the_working_directory_is_read() -> None:
    Path("memgate.toml").write_text("port = 9400\n")
    assert load_settings(env={}).port == 9400


def test_dashed_keys_in_the_file_are_accepted(tmp_path: Path) -> None:
    assert load_settings(env={}, config_file=config(tmp_path, "max-connections = 7\n")).max_connections == 7


def test_env_strings_are_converted_to_the_options_type() -> None:
    settings = load_settings(env={"MEMGATE_READ_TIMEOUT": "2.5", "MEMGATE_QUEUE_MAX": "10"})
    assert settings.read_timeout == 2.5 and settings.queue_max == 10


def test_an_int_in_the_file_is_accepted_for_a_float_option(tmp_path: Path) -> None:
    value = load_settings(env={}, config_file=config(tmp_path, "read_timeout = 30\n")).read_timeout
    assert value == 30.0 and isinstance(value, float)


def test_tenants_come_from_the_file(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_file=config(tmp_path, '[tenants]\nk_0123456789abcdef = "acme"\n'))
    assert dict(settings.tenants) == {"k_0123456789abcdef": "acme"}


def test_secrets_are_not_in_the_repr() -> None:
    assert "hunter2" not in repr(load_settings({"admin_token": "hunter2", "extraction_api_key": "hunter2"}, env={}))


def test_unrelated_env_vars_are_ignored() -> None:
    assert load_settings(env={"MEMGATE_NOT_AN_OPTION": "x", "PORT": "1"}) == Settings()


@pytest.mark.parametrize("text,message", [
    ("bogus = 1\n", "unknown setting 'bogus'"),
    ("port = \"eighty\"\n", "port must be int, got 'eighty'"),
    ("port = [1]\n", "port must be int"),
    ("tenants = 5\n", "[tenants] must map fingerprints to names"),
    ("[tenants]\nk_1 = 5\n", "[tenants] must map fingerprints to names"),
    ("port = \n", "memgate.toml"),
])
def test_a_bad_file_is_a_config_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_file=path)
    assert message in str(info.value) and path in str(info.value)


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml"):
        load_settings(env={}, config_file=str(tmp_path / "nope.toml"))


def test_a_bad_env_value_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="MEMGATE_PORT: port must be int, got '80.5'"):
        load_settings(env={"MEMGATE_PORT": "80.5"})


def test_a_bad_flag_value_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--read-timeout: read_timeout must be float"):
        load_settings({"read_timeout": "soon"}, env={})


@pytest.mark.parametrize("changes,message", [
    ({"tenant_mode": "all"}, "tenant_mode must be 'key' or 'none'"),
    ({"embedder": "bert"}, "embedder must be"),
    ({"extractor": "magic"}, "extractor must be 'heuristic' or 'llm'"),
    ({"loop": "trio"}, "loop must be one of uvloop, asyncio"),
    ({"http": "h2"}, "http must be one of httptools, h11"),
    ({"upstream_transport": "curl"}, "upstream_transport must be one of aiohttp, httpx"),
    ({"max_body_bytes": 0}, "must be positive"),
    ({"max_connections": -1}, "must be positive"),
])
def test_an_unusable_value_is_a_config_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(changes, env={})


def test_an_unusable_env_value_is_a_config_error_too() -> None:
    with pytest.raises(ConfigError, match="tenant_mode"):
        load_settings(env={"MEMGATE_TENANT_MODE": "sometimes"})


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_derived_paths_follow_the_data_dir() -> None:
    settings = load_settings({"data_dir": "/srv/memgate"}, env={})
    assert str(settings.sqlite_path) == "/srv/memgate/memgate.sqlite3" and settings.lancedb_uri == "/srv/memgate/lancedb"
    assert load_settings({"store_uri": "s3://b/p"}, env={}).lancedb_uri == "s3://b/p"


def test_the_upstream_base_has_no_trailing_slash() -> None:
    assert load_settings({"upstream_url": "http://x/v1/"}, env={}).upstream_base == "http://x/v1"


def test_a_boolean_for_a_number_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(env={}, config_file=config(tmp_path, "port = true\n"))


def test_a_fraction_for_an_int_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(env={}, config_file=config(tmp_path, "port = 8080.9\n"))


def test_a_boolean_for_a_float_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(env={}, config_file=config(tmp_path, "connect_timeout = true\n"))


def test_an_int_for_a_float_option_is_accepted_as_a_float(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_file=config(tmp_path, "connect_timeout = 3\n"))
    assert settings.connect_timeout == 3.0 and isinstance(settings.connect_timeout, float)


def test_an_integral_float_for_an_int_option_is_accepted(tmp_path: Path) -> None:
    assert load_settings(env={}, config_file=config(tmp_path, "port = 8081.0\n")).port == 8081


def test_options_are_derived_from_the_settings_fields_with_their_types() -> None:
    assert [(o.name, o.type) for o in OPTIONS][:2] == [("host", str), ("port", int)]
    assert {o.name for o in OPTIONS} == {f.name for f in dataclasses.fields(Settings)} - {"tenants", "worker"}  # worker: set by the server per process
    assert all(o.type in (str, int, float, bool) and isinstance(o.default, o.type) for o in OPTIONS)


def test_secret_settings_stay_out_of_the_repr() -> None:
    shown = repr(Settings(admin_token="adm-secret", extraction_api_key="llm-secret"))
    assert "adm-secret" not in shown and "llm-secret" not in shown
    assert {o.name for o in OPTIONS if o.secret} == {"admin_token", "extraction_api_key"}


def test_the_llm_output_mode_is_auto_or_one_of_the_modes() -> None:
    assert Settings().llm_output_mode == "auto"
    for mode in ("json_schema", "json_object", "tools", "prompt"):
        assert load_settings(env={"MEMGATE_LLM_OUTPUT_MODE": mode}).llm_output_mode == mode
    with pytest.raises(ConfigError, match="llm_output_mode must be one of auto, json_schema"):
        Settings(llm_output_mode="grammar")
