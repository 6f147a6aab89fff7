"""The settings object reads EMCOINS_* variables and refuses bad values by name."""

import pytest

from shared.config import Settings, get_settings
from shared.errors import ConfigError


def test_defaults():
    settings = Settings.from_env({})
    assert settings.job_ttl_seconds == 86400
    assert settings.redis_url.startswith("redis://")


def test_reads_environment():
    settings = Settings.from_env(
        {"EMCOINS_FETCH_BATCH_SIZE": "7", "EMCOINS_REDIS_TIMEOUT": "0.5", "OTHER": "x"}
    )
    assert settings.fetch_batch_size == 7
    assert settings.redis_timeout == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMCOINS_FETCH_BATCH_SIZE": "many"}, "EMCOINS_FETCH_BATCH_SIZE must be an integer"),
        ({"EMCOINS_REDIS_TIMEOUT": "soon"}, "EMCOINS_REDIS_TIMEOUT must be a number"),
        ({"EMCOINS_FETCH_BATCH_SIZE": "0"}, "EMCOINS_FETCH_BATCH_SIZE must be at least 1"),
        ({"EMCOINS_FETCH_BACKOFF": "-1"}, "EMCOINS_FETCH_BACKOFF must not be negative"),
        ({"EMCOINS_REDIS_URL": "http://x"}, "EMCOINS_REDIS_URL must be a redis:// URL"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMCOINS_MAX_FLIPS": ""}, "EMCOINS_MAX_FLIPS must be an integer, got ''"),
        ({"EMCOINS_FETCH_BACKOFF": ""}, "EMCOINS_FETCH_BACKOFF must be a number, got ''"),
        ({"EMCOINS_REDIS_URL": ""}, "EMCOINS_REDIS_URL must be a redis:// URL, got ''"),
        ({"EMCOINS_LOG_FORMAT": ""}, "EMCOINS_LOG_FORMAT must be json or text, got ''"),
        ({"EMCOINS_MAX_FLIPS": "0"}, "EMCOINS_MAX_FLIPS must be at least 1"),
        ({"EMCOINS_MAX_FLIPS": "2.5"}, "EMCOINS_MAX_FLIPS must be an integer, got '2.5'"),
    ],
)
def test_an_empty_scalar_does_not_parse_and_names_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_unset_lists_keep_the_default_but_empty_lists_are_empty():
    unset = Settings.from_env({})
    assert unset.source_allowlist == ("http://127.0.0.1:8001",)
    empty = Settings.from_env({"EMCOINS_SOURCE_ALLOWLIST": "", "EMCOINS_API_TOKENS": ""})
    # No allowed origin at all, as the README documents, and no authentication.
    assert empty.source_allowlist == () and empty.api_tokens == ()


def test_lists_are_comma_separated_not_json():
    settings = Settings.from_env(
        {"EMCOINS_SOURCE_ALLOWLIST": " http://a.example , https://b.example:8443,",
         "EMCOINS_API_TOKENS": "one,two"}
    )
    assert settings.source_allowlist == ("http://a.example", "https://b.example:8443")
    assert settings.api_tokens == ("one", "two")


def test_keyword_construction_ignores_the_process_environment(monkeypatch):
    monkeypatch.setenv("EMCOINS_MAX_QUEUED", "5")
    assert Settings().max_queued == 2000
    assert Settings(max_queued=7).max_queued == 7
    assert Settings.from_env().max_queued == 5


def test_keyword_construction_is_validated_too():
    with pytest.raises(ConfigError, match="EMCOINS_MAX_COMPONENTS must be at least 1"):
        Settings(max_components=0)
    with pytest.raises(ConfigError, match="EMCOINS_NO_SUCH_THING is not a setting"):
        Settings(no_such_thing=1)


def test_settings_are_frozen_and_hashable():
    settings = Settings()
    with pytest.raises(ValueError):
        settings.max_rows = 1
    assert hash(settings) == hash(Settings())
    assert get_settings() is get_settings()


def test_replace_returns_a_validated_copy():
    settings = Settings(max_rows=5)
    changed = settings.replace(max_draws=9)
    assert (changed.max_rows, changed.max_draws, settings.max_draws) == (5, 9, 1_000_000_000)
    with pytest.raises(ConfigError, match="EMCOINS_MAX_DRAWS must be at least 1"):
        settings.replace(max_draws=0)


def test_tokens_stay_out_of_repr_and_errors():
    settings = Settings.from_env({"EMCOINS_API_TOKENS": "s3cret-token"})
    assert "s3cret-token" not in repr(settings) and "s3cret-token" not in str(settings)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"EMCOINS_API_TOKENS": "s3cret token"})
    assert "s3cret" not in str(info.value)


def test_replicate_settings_have_their_defaults_and_bounds():
    settings = Settings.from_env({})
    assert settings.max_replicates == 10_000
    assert settings.replicate_chunk_seconds == 0.25 and settings.replicate_chunk_max == 1000
    assert Settings.from_env({"EMCOINS_REPLICATE_CHUNK_SECONDS": "5"}).replicate_chunk_seconds == 5
    for value in ("0", "5.1"):  # a chunk must end well inside the 20 s visibility timeout
        with pytest.raises(ConfigError, match="EMCOINS_REPLICATE_CHUNK_SECONDS must be more "
                                              "than 0 and at most a quarter of"):
            Settings.from_env({"EMCOINS_REPLICATE_CHUNK_SECONDS": value})
    with pytest.raises(ConfigError, match="EMCOINS_MAX_REPLICATES must be at least 1"):
        Settings.from_env({"EMCOINS_MAX_REPLICATES": "0"})
    with pytest.raises(ConfigError, match="EMCOINS_REPLICATE_CHUNK_MAX must be an integer"):
        Settings.from_env({"EMCOINS_REPLICATE_CHUNK_MAX": "many"})
