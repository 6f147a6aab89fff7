"""The draw source's settings, read from ``DRAWSOURCE_*`` environment variables and validated.

The draw source stands in for an outside service, so it imports nothing from ``shared/``.
Values follow the service's rule: an unset variable means the default, an empty one means
empty (``DRAWSOURCE_SEED=`` is no seed, ``DRAWSOURCE_WEIGHTS=`` equal weights), and a
value that does not parse is a :class:`DrawSourceConfigError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "DRAWSOURCE_"
FORMATS = ("string", "list", "apigw")

# Comma-separated in the environment; NoDecode keeps pydantic-settings from trying JSON.
Numbers = Annotated[tuple[float, ...], NoDecode]


class DrawSourceConfigError(ValueError):
    """A ``DRAWSOURCE_*`` setting is malformed or out of range."""


def _name(field: str) -> str:
    return PREFIX + field.upper()


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _problem(error: ErrorDetails) -> str:
    """One validation error as a sentence naming the variable."""
    name = _name(str(error["loc"][0])) if error["loc"] else PREFIX + "*"
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "value_error" and isinstance(ctx.get("error"), DrawSourceConfigError):
        return str(ctx["error"])
    if kind.startswith("int_"):
        return f"{name} must be an integer, got {error['input']!r}"
    if kind.startswith("float_"):
        return f"{name} must be a number, got {error['input']!r}"
    if kind == "extra_forbidden":
        return f"{name} is not a setting"
    return f"{name}: {error['msg']}"


class DrawSourceConfig(BaseSettings):
    """What the draw source plays and how it misbehaves; each field is ``DRAWSOURCE_<NAME>``.

    ``weights`` may be given unnormalised (or empty for equal weights); after
    construction it always holds one normalised weight per coin.
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    coins: Numbers = (0.3, 0.7)
    weights: Numbers = ()
    flips: int = 10
    seed: int | None = None
    format: str = "string"
    latency_ms: float = 0.0
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8001
    threads: int = 64

    def __init__(self, **values: Any) -> None:
        # Validated here, not only in from_env, so configs built in code are checked too.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise DrawSourceConfigError(_problem(exc.errors()[0])) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword construction sees the defaults and the keywords only; from_env reads
        # the environment, so a test's config never depends on the shell it runs in.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DrawSourceConfig:
        """Build a config from ``DRAWSOURCE_*`` variables; unset ones keep the default."""
        source = _EnvironSource(cls, os.environ if environ is None else environ)
        return cls(**source())

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready data, served at ``/config`` so tests can know the truth."""
        return self.model_dump(mode="json")

    @field_validator("coins", "weights", mode="before")
    @classmethod
    def _split(cls, value: Any, info: ValidationInfo) -> Any:
        """A comma-separated string as numbers; an empty string as none."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return ()
        items = [item.strip() for item in value.split(",")]
        if any(not item for item in items):
            raise DrawSourceConfigError(
                f"{_name(info.field_name)} must be comma-separated numbers, got {value!r}"
            )
        return items

    @field_validator("seed", mode="before")
    @classmethod
    def _no_seed(cls, value: Any) -> Any:
        # DRAWSOURCE_SEED= (as a compose file may write it) means no seed.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("host", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("coins")
    @classmethod
    def _coins(cls, coins: tuple[float, ...]) -> tuple[float, ...]:
        if not coins:
            raise DrawSourceConfigError(f"{_name('coins')} must list at least one coin")
        for p in coins:
            if not 0.0 <= p <= 1.0:  # also rejects NaN
                raise DrawSourceConfigError(
                    f"{_name('coins')} must be probabilities in [0, 1], got {p!r}"
                )
        return coins

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        """One normalised weight per coin (equal weights when none are given)."""
        coins = info.data.get("coins")
        if coins is None:  # the coins were refused: that error is the one reported
            return weights
        weights = weights or (1.0,) * len(coins)
        if len(weights) != len(coins):
            raise DrawSourceConfigError(
                f"{_name('weights')} has {len(weights)} weights for {len(coins)} coins"
            )
        for w in weights:
            if not (math.isfinite(w) and w >= 0.0):
                raise DrawSourceConfigError(
                    f"{_name('weights')} must be finite and non-negative, got {w!r}"
                )
        total = math.fsum(weights)
        if total <= 0.0:
            raise DrawSourceConfigError(f"{_name('weights')} must not all be zero")
        return tuple(w / total for w in weights)

    @field_validator("flips", "threads")
    @classmethod
    def _at_least_one(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise DrawSourceConfigError(f"{_name(info.field_name)} must be at least 1, got {value}")
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, seed: int | None) -> int | None:
        if seed is not None and seed < 0:
            raise DrawSourceConfigError(f"{_name('seed')} must not be negative, got {seed}")
        return seed

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in FORMATS:
            raise DrawSourceConfigError(
                f"{_name('format')} must be one of {', '.join(FORMATS)}, got {value!r}"
            )
        return value

    @field_validator("latency_ms", "slow_seconds")
    @classmethod
    def _duration(cls, value: float, info: ValidationInfo) -> float:
        if not (math.isfinite(value) and value >= 0.0):
            raise DrawSourceConfigError(
                f"{_name(info.field_name)} must be a non-negative number, got {value!r}"
            )
        return value

    @field_validator("error_rate", "slow_rate")
    @classmethod
    def _fraction(cls, value: float, info: ValidationInfo) -> float:
        if not 0.0 <= value <= 1.0:
            raise DrawSourceConfigError(
                f"{_name(info.field_name)} must be a fraction in [0, 1], got {value!r}"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value:
            raise DrawSourceConfigError(f"{_name('host')} must not be empty")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise DrawSourceConfigError(f"{_name('port')} must be in 1..65535, got {value}")
        return value
