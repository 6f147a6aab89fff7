"""The draw source's settings, read from ``DRAWSOURCE_*`` environment variables and validated."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from shared.config import parse_float, parse_int
from shared.errors import ConfigError

PREFIX = "DRAWSOURCE_"
FORMATS = ("string", "list", "apigw")


def _name(field: str) -> str:
    return PREFIX + field.upper()


def _floats(name: str, raw: str) -> tuple[float, ...]:
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ConfigError(f"{name} must be comma-separated numbers, got {raw!r}")
    return tuple(parse_float(name, item) for item in items)


_PARSERS = {
    "coins": _floats,
    "weights": _floats,
    "flips": parse_int,
    "seed": parse_int,
    "format": lambda name, raw: raw.strip().lower(),
    "latency_ms": parse_float,
    "error_rate": parse_float,
    "slow_rate": parse_float,
    "slow_seconds": parse_float,
    "host": lambda name, raw: raw.strip(),
    "port": parse_int,
    "threads": parse_int,
}


@dataclasses.dataclass(frozen=True)
class DrawSourceConfig:
    """What the draw source plays and how it misbehaves; each field is ``DRAWSOURCE_<NAME>``.

    ``weights`` may be given unnormalised (or empty for equal weights); after
    construction it always holds one normalised weight per coin.
    """

    coins: tuple[float, ...] = (0.3, 0.7)
    weights: tuple[float, ...] = ()
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

    def __post_init__(self) -> None:
        # Validating here, not only in from_env, so configs built in code are checked too.
        if not self.coins:
            raise ConfigError(f"{_name('coins')} must list at least one coin")
        for p in self.coins:
            if not 0.0 <= p <= 1.0:  # also rejects NaN
                raise ConfigError(f"{_name('coins')} must be probabilities in [0, 1], got {p!r}")
        weights = self.weights or (1.0,) * len(self.coins)
        if len(weights) != len(self.coins):
            raise ConfigError(
                f"{_name('weights')} has {len(weights)} weights for {len(self.coins)} coins"
            )
        for w in weights:
            if not (math.isfinite(w) and w >= 0.0):
                raise ConfigError(f"{_name('weights')} must be finite and non-negative, got {w!r}")
        total = math.fsum(weights)
        if total <= 0.0:
            raise ConfigError(f"{_name('weights')} must not all be zero")
        object.__setattr__(self, "coins", tuple(float(p) for p in self.coins))
        object.__setattr__(self, "weights", tuple(w / total for w in weights))

        if self.flips < 1:
            raise ConfigError(f"{_name('flips')} must be at least 1, got {self.flips}")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"{_name('seed')} must not be negative, got {self.seed}")
        if self.format not in FORMATS:
            raise ConfigError(
                f"{_name('format')} must be one of {', '.join(FORMATS)}, got {self.format!r}"
            )
        for field in ("latency_ms", "slow_seconds"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"{_name(field)} must be a non-negative number, got {value!r}")
        for field in ("error_rate", "slow_rate"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{_name(field)} must be a fraction in [0, 1], got {value!r}")
        if not self.host:
            raise ConfigError(f"{_name('host')} must not be empty")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{_name('port')} must be in 1..65535, got {self.port}")
        if self.threads < 1:
            raise ConfigError(f"{_name('threads')} must be at least 1, got {self.threads}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DrawSourceConfig:
        """Build a config from ``DRAWSOURCE_*`` variables; unset or blank ones keep the default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = _name(field.name)
            raw = environ.get(name, "")
            # Blank counts as unset, so `DRAWSOURCE_SEED=` in a compose file means "no seed".
            if raw.strip():
                values[field.name] = _PARSERS[field.name](name, raw)
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready data, served at ``/config`` so tests can know the truth."""
        data = dataclasses.asdict(self)
        data["coins"] = list(self.coins)
        data["weights"] = list(self.weights)
        return data
