"""The one settings object, read from the environment once and validated.

Every module imports :func:`get_settings` instead of reading ``os.environ``;
tests build their own :class:`Settings` with :meth:`Settings.from_env`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

from shared.allowlist import OriginError, parse_allowlist
from shared.errors import ConfigError

PREFIX = "EMCOINS_"


def parse_int(name: str, raw: str) -> int:
    """``raw`` as an integer, or a :class:`ConfigError` naming the variable."""
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def parse_float(name: str, raw: str) -> float:
    """``raw`` as a number, or a :class:`ConfigError` naming the variable."""
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _str(name: str, raw: str) -> str:
    return raw


# Keyed by the annotation's text: with postponed annotations a field's type is a string.
_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "int": parse_int,
    "float": parse_float,
    "str": _str,
    "tuple[str, ...]": _list,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings shared by the API and the workers; each field is ``EMCOINS_<NAME>``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connect and socket timeouts on every Redis client, so a stopped or frozen
    # Redis gives a quick error rather than a hang.
    redis_timeout: float = 2.0
    job_ttl_seconds: int = 24 * 3600
    # Draws fetched by one subtask; a job of N draws fans out into ceil(N / size) subtasks.
    # One subtask per draw would cost more in Celery overhead than the fetch itself.
    fetch_batch_size: int = 30
    # Concurrent requests per worker process (a thread pool shared by its fetch subtasks).
    fetch_concurrency: int = 32
    fetch_connect_timeout: float = 2.0
    fetch_read_timeout: float = 5.0
    # Whole-exchange deadline of one draw request (connect, headers and body together),
    # so a source trickling one byte at a time cannot hold a thread past it.
    fetch_deadline: float = 5.0
    # Deadline of a whole fetch batch, well inside the visibility timeout: a batch still
    # running is never redelivered to a second worker.
    fetch_batch_deadline: float = 12.0
    # Request bodies: nesting depth of JSON and digits of any integer in it.
    max_json_depth: int = 32
    max_int_digits: int = 30
    # Attempts per draw request (first try included), with exponential backoff and jitter:
    # with a source failing 35% of requests, one draw in 36,000 still fails all ten.
    fetch_attempts: int = 10
    fetch_backoff: float = 0.05
    fetch_backoff_max: float = 2.0
    # Limits on what one request may ask for.
    max_body_bytes: int = 2 * 1024 * 1024
    # Rows of inline ``draws`` or ``counts`` (a counts row may stand for many draws).
    max_rows: int = 100_000
    # Draws in all, counting each counts row's multiplicity; EM never expands them.
    max_draws: int = 1_000_000_000
    max_flips: int = 1_000_000
    # scikit-learn's GaussianMixture takes no sample weights: the baseline expands the
    # counts into one entry per draw, so it runs only up to this many draws.
    max_gmm_draws: int = 1_000_000
    max_source_draws: int = 10_000
    max_components: int = 10
    max_restarts: int = 100
    # Unfinished jobs allowed at once; beyond it POST /jobs answers 429 rather than
    # letting the queue and Redis grow without bound.
    max_queued: int = 2000
    # Origins (scheme://host:port, port "*" for any) that source.url may point at.
    source_allowlist: tuple[str, ...] = ("http://127.0.0.1:8001",)
    # Bearer tokens the API accepts; empty means no authentication. Kept out of repr and logs.
    api_tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    # Seconds a client is told to wait between polls of a running job.
    retry_after_seconds: int = 1
    # The longest wait suggested while many jobs are unfinished (one second per 200).
    retry_after_max_seconds: int = 10
    # Seconds an unacknowledged task may stay with a worker before the broker gives it to
    # another: a worker that died whole (SIGKILL, lost machine) holds its tasks this long.
    # Tasks are idempotent, so a slow task redelivered while it still runs does no harm.
    visibility_timeout: int = 20
    # Seconds between the workers' sweeps that give back such tasks (kombu's default
    # sweep runs about every 100 s whatever the visibility timeout).
    unacked_restore_interval: int = 2
    # Log lines of the API and workers: "json" (one object per line) or "text".
    log_format: str = "json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``EMCOINS_*`` variables, falling back to the defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = PREFIX + field.name.upper()
            if name in environ:
                parser = _PARSERS[str(field.type)]
                values[field.name] = parser(name, environ[name])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting out of range."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{PREFIX}{field.name.upper()} must not be negative")
        for name in (
            "fetch_batch_size",
            "fetch_concurrency",
            "fetch_attempts",
            "max_draws",
            "max_flips",
            "max_source_draws",
            "max_components",
            "max_restarts",
            "max_queued",
            "job_ttl_seconds",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        try:
            parse_allowlist(self.source_allowlist)
        except OriginError as exc:
            raise ConfigError(f"{PREFIX}SOURCE_ALLOWLIST: {exc}") from None
        if any(not token or any(c.isspace() for c in token) for token in self.api_tokens):
            # The message never echoes a token: it is a secret.
            raise ConfigError(f"{PREFIX}API_TOKENS entries must not contain whitespace")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"{PREFIX}LOG_FORMAT must be json or text, got {self.log_format!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{PREFIX}REDIS_URL must be a redis:// URL, got {self.redis_url!r}")


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
