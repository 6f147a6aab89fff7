"""DrawSourceConfig: defaults, parsing of every variable, and a clear error for each bad value."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from drawsource.config import DrawSourceConfig, DrawSourceConfigError


def test_defaults_from_an_empty_environment() -> None:
    config = DrawSourceConfig.from_env({})
    assert config.coins == (0.3, 0.7)
    assert config.weights == (0.5, 0.5)
    assert config.flips == 10
    assert config.seed is None
    assert config.format == "string"
    assert config.latency_ms == 0.0
    assert config.error_rate == 0.0
    assert config.slow_rate == 0.0
    assert config.slow_seconds == 30.0
    assert config.host == "127.0.0.1"
    assert config.port == 8001
    assert config.threads == 64


def test_every_variable_is_read() -> None:
    config = DrawSourceConfig.from_env(
        {
            "DRAWSOURCE_COINS": " 0.1, 0.5 ,0.9",
            "DRAWSOURCE_WEIGHTS": "1,1,2",
            "DRAWSOURCE_FLIPS": "25",
            "DRAWSOURCE_SEED": "42",
            "DRAWSOURCE_FORMAT": "APIGW",
            "DRAWSOURCE_LATENCY_MS": "12.5",
            "DRAWSOURCE_ERROR_RATE": "0.1",
            "DRAWSOURCE_SLOW_RATE": "0.05",
            "DRAWSOURCE_SLOW_SECONDS": "3",
            "DRAWSOURCE_HOST": "0.0.0.0",
            "DRAWSOURCE_PORT": "9000",
            "DRAWSOURCE_THREADS": "8",
            "UNRELATED": "ignored",
        }
    )
    assert config.coins == (0.1, 0.5, 0.9)
    # 1:1:2 normalised by hand.
    assert config.weights == pytest.approx((0.25, 0.25, 0.5))
    assert config.flips == 25
    assert config.seed == 42
    assert config.format == "apigw"
    assert config.latency_ms == 12.5
    assert config.error_rate == 0.1
    assert config.slow_rate == 0.05
    assert config.slow_seconds == 3.0
    assert config.host == "0.0.0.0"
    assert config.port == 9000
    assert config.threads == 8


def test_weights_are_normalised_to_sum_one() -> None:
    config = DrawSourceConfig.from_env({"DRAWSOURCE_WEIGHTS": "3,1"})
    assert config.weights == pytest.approx((0.75, 0.25))


def test_an_empty_optional_or_list_value_means_none() -> None:
    # DRAWSOURCE_SEED= is no seed (not the default's, which happens to be none too),
    # and DRAWSOURCE_WEIGHTS= is no weights, hence equal ones.
    config = DrawSourceConfig.from_env(
        {"DRAWSOURCE_SEED": "", "DRAWSOURCE_COINS": "0.1,0.5,0.9", "DRAWSOURCE_WEIGHTS": ""}
    )
    assert config.seed is None
    assert config.weights == pytest.approx((1 / 3,) * 3)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("DRAWSOURCE_FLIPS", "DRAWSOURCE_FLIPS must be an integer, got ''"),
        ("DRAWSOURCE_PORT", "DRAWSOURCE_PORT must be an integer, got ''"),
        ("DRAWSOURCE_LATENCY_MS", "DRAWSOURCE_LATENCY_MS must be a number, got ''"),
        ("DRAWSOURCE_COINS", "DRAWSOURCE_COINS must list at least one coin"),
        ("DRAWSOURCE_FORMAT", "DRAWSOURCE_FORMAT must be one of"),
        ("DRAWSOURCE_HOST", "DRAWSOURCE_HOST must not be empty"),
    ],
)
def test_an_empty_value_is_not_the_default(variable: str, message: str) -> None:
    # Unset means the default; set to empty means empty, which a number or a host is not.
    with pytest.raises(DrawSourceConfigError, match=message):
        DrawSourceConfig.from_env({variable: ""})


def test_the_draw_source_imports_nothing_from_shared() -> None:
    # It stands in for an outside service: run it in a fresh interpreter and look.
    code = (
        "import sys, drawsource.__main__\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'shared'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_from_env_without_argument_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAWSOURCE_FLIPS", "17")
    assert DrawSourceConfig.from_env().flips == 17


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DRAWSOURCE_COINS": "1.5"}, "DRAWSOURCE_COINS"),
        ({"DRAWSOURCE_COINS": "0.3,-0.1"}, "DRAWSOURCE_COINS"),
        ({"DRAWSOURCE_COINS": "nan"}, "DRAWSOURCE_COINS"),
        ({"DRAWSOURCE_COINS": "heads"}, "DRAWSOURCE_COINS"),
        ({"DRAWSOURCE_COINS": "0.3,,0.7"}, "DRAWSOURCE_COINS"),
        ({"DRAWSOURCE_WEIGHTS": "1"}, "DRAWSOURCE_WEIGHTS"),
        ({"DRAWSOURCE_WEIGHTS": "1,1,1"}, "DRAWSOURCE_WEIGHTS"),
        ({"DRAWSOURCE_COINS": "0.5", "DRAWSOURCE_WEIGHTS": "1,1"}, "DRAWSOURCE_WEIGHTS"),
        ({"DRAWSOURCE_WEIGHTS": "-1,2"}, "DRAWSOURCE_WEIGHTS"),
        ({"DRAWSOURCE_WEIGHTS": "0,0"}, "DRAWSOURCE_WEIGHTS"),
        ({"DRAWSOURCE_WEIGHTS": "inf,1"}, "DRAWSOURCE_WEIGHTS"),
        ({"DRAWSOURCE_FLIPS": "0"}, "DRAWSOURCE_FLIPS"),
        ({"DRAWSOURCE_FLIPS": "2.5"}, "DRAWSOURCE_FLIPS"),
        ({"DRAWSOURCE_SEED": "-1"}, "DRAWSOURCE_SEED"),
        ({"DRAWSOURCE_SEED": "abc"}, "DRAWSOURCE_SEED"),
        ({"DRAWSOURCE_FORMAT": "xml"}, "DRAWSOURCE_FORMAT"),
        ({"DRAWSOURCE_LATENCY_MS": "-1"}, "DRAWSOURCE_LATENCY_MS"),
        ({"DRAWSOURCE_LATENCY_MS": "inf"}, "DRAWSOURCE_LATENCY_MS"),
        ({"DRAWSOURCE_ERROR_RATE": "-0.1"}, "DRAWSOURCE_ERROR_RATE"),
        ({"DRAWSOURCE_ERROR_RATE": "1.5"}, "DRAWSOURCE_ERROR_RATE"),
        ({"DRAWSOURCE_ERROR_RATE": "nan"}, "DRAWSOURCE_ERROR_RATE"),
        ({"DRAWSOURCE_SLOW_RATE": "-0.5"}, "DRAWSOURCE_SLOW_RATE"),
        ({"DRAWSOURCE_SLOW_RATE": "2"}, "DRAWSOURCE_SLOW_RATE"),
        ({"DRAWSOURCE_SLOW_SECONDS": "-1"}, "DRAWSOURCE_SLOW_SECONDS"),
        ({"DRAWSOURCE_PORT": "0"}, "DRAWSOURCE_PORT"),
        ({"DRAWSOURCE_PORT": "70000"}, "DRAWSOURCE_PORT"),
        ({"DRAWSOURCE_PORT": "http"}, "DRAWSOURCE_PORT"),
        ({"DRAWSOURCE_THREADS": "0"}, "DRAWSOURCE_THREADS"),
    ],
)
def test_bad_value_raises_an_error_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(DrawSourceConfigError, match=variable):
        DrawSourceConfig.from_env(env)


def test_config_is_immutable() -> None:
    config = DrawSourceConfig()
    with pytest.raises(ValueError):
        config.flips = 3  # type: ignore[misc]


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="DRAWSOURCE_FLIPS"):
        DrawSourceConfig.from_env({"DRAWSOURCE_FLIPS": "-3"})


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(DrawSourceConfigError, match="DRAWSOURCE_COINS"):
        DrawSourceConfig(coins=(0.5, 1.01))
    assert DrawSourceConfig(coins=(0.2, 0.4, 0.6)).weights == pytest.approx((1 / 3,) * 3)


def test_public_view_is_json_with_the_truth() -> None:
    config = DrawSourceConfig(coins=(0.1, 0.9), weights=(1.0, 4.0), flips=5, format="list")
    data = json.loads(json.dumps(config.public()))
    assert data["coins"] == [0.1, 0.9]
    assert data["weights"] == pytest.approx([0.2, 0.8])
    assert data["flips"] == 5
    assert data["format"] == "list"
