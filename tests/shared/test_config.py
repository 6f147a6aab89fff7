"""The settings object reads EMCOINS_* variables and refuses bad values by name."""

import pytest

from shared.config import Settings
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
