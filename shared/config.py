"""The one settings object, read from the environment once and validated.

Every module imports :func:`get_settings` instead of reading ``os.environ``;
tests build their own :class:`Settings` by keyword or with :meth:`Settings.from_env`.

Values follow one rule: an unset variable means the default, a variable set to an
empty value means empty (for the comma-separated lists, none at all), and a value that
does not parse is a :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from shared.allowlist import OriginError, parse_allowlist
from shared.errors import ConfigError

PREFIX = "EMCOINS_"

# Numbers from outside are never negative; counts and limits are at least one.
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
AtLeastOne = Annotated[int, Field(ge=1)]
# Comma-separated in the environment; NoDecode keeps pydantic-settings from trying JSON.
CommaList = Annotated[tuple[str, ...], NoDecode]


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    return PREFIX + field.upper()


class EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _problem(error: ErrorDetails) -> str:
    """One validation error as a sentence naming the variable (never echoing a secret)."""
    name = variable(str(error["loc"][0])) if error["loc"] else PREFIX + "*"
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "value_error" and isinstance(ctx.get("error"), ConfigError):
        return str(ctx["error"])
    if kind.startswith("int_"):
        return f"{name} must be an integer, got {error['input']!r}"
    if kind.startswith("float_"):
        return f"{name} must be a number, got {error['input']!r}"
    if kind == "greater_than_equal" and ctx["ge"] == 0:
        return f"{name} must not be negative"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx['ge']}"
    if kind == "extra_forbidden":
        return f"{name} is not a setting"
    return f"{name}: {error['msg']}"


class EnvSettings(BaseSettings):
    """Settings read once from a mapping of environment variables by :meth:`from_env`.

    Built by keyword they read no environment, so a test's object never depends on the
    shell it runs in. A value that does not validate raises :meth:`error` with one
    sentence naming its variable. Subclasses give :meth:`environ_source` and
    :meth:`error`; the service's :class:`Settings` and the local stack's config do.
    """

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise self.error(exc.errors()[0]) from None

    @classmethod
    def error(cls, problem: ErrorDetails) -> Exception:
        """The exception for one validation problem."""
        raise NotImplementedError

    @classmethod
    def environ_source(cls, environ: Mapping[str, str]) -> PydanticBaseSettingsSource:
        """The source reading this class's variables from ``environ``."""
        raise NotImplementedError

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword construction sees the defaults and the keywords only; the environment
        # is read by from_env, once.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build from the environment (or ``environ``), falling back to the defaults."""
        return cls(**cls.environ_source(os.environ if environ is None else environ)())

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated as a new object is."""
        return type(self)(**{**self.model_dump(), **changes})


class Settings(EnvSettings):
    """Settings shared by the API and the workers; each field is ``EMCOINS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="forbid", hide_input_in_errors=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connect and socket timeouts on every Redis client, so a stopped or frozen
    # Redis gives a quick error rather than a hang.
    redis_timeout: NonNegativeFloat = 2.0
    job_ttl_seconds: AtLeastOne = 24 * 3600
    # Draws fetched by one subtask; a job of N draws fans out into ceil(N / size) subtasks.
    # One subtask per draw would cost more in Celery overhead than the fetch itself.
    fetch_batch_size: AtLeastOne = 30
    # Concurrent requests per worker process (a thread pool shared by its fetch subtasks).
    fetch_concurrency: AtLeastOne = 32
    # Draws of one worker process that may hold more than 64 KiB of answer at once (each
    # up to the answer cap); the others wait their turn within their deadlines. Bounds
    # what large or hostile answers take, whatever the number of batches.
    fetch_large_answers: AtLeastOne = 8
    fetch_connect_timeout: NonNegativeFloat = 2.0
    fetch_read_timeout: NonNegativeFloat = 5.0
    # Whole-exchange deadline of one draw request (connect, headers and body together),
    # so a source trickling one byte at a time cannot hold a thread past it.
    fetch_deadline: NonNegativeFloat = 5.0
    # Deadline of a whole fetch batch, well inside the visibility timeout: a batch still
    # running is never redelivered to a second worker.
    fetch_batch_deadline: NonNegativeFloat = 12.0
    # Request bodies: nesting depth of JSON and digits of any integer in it.
    max_json_depth: NonNegativeInt = 32
    max_int_digits: NonNegativeInt = 30
    # Attempts per draw request (first try included), with exponential backoff and jitter:
    # with a source failing 35% of requests, one draw in 36,000 still fails all ten.
    fetch_attempts: AtLeastOne = 10
    fetch_backoff: NonNegativeFloat = 0.05
    fetch_backoff_max: NonNegativeFloat = 2.0
    # Limits on what one request may ask for.
    max_body_bytes: NonNegativeInt = 2 * 1024 * 1024
    # Rows of inline ``draws`` or ``counts`` (a counts row may stand for many draws).
    max_rows: NonNegativeInt = 100_000
    # Draws in all, counting each counts row's multiplicity; EM never expands them.
    max_draws: AtLeastOne = 1_000_000_000
    max_flips: AtLeastOne = 1_000_000
    # scikit-learn's GaussianMixture takes no sample weights: the baseline expands the
    # counts into one entry per draw, so it runs only up to this many draws.
    max_gmm_draws: NonNegativeInt = 1_000_000
    max_source_draws: AtLeastOne = 10_000
    max_components: AtLeastOne = 10
    max_restarts: AtLeastOne = 100
    # Bootstrap replicates (and replicates per stage of the components test) one job may ask for.
    max_replicates: AtLeastOne = 10_000
    # Work per replicate chunk, as timed on the first replicates: long enough that a chunk's
    # overhead (its message, the reads and the write-once save, a few milliseconds) stays
    # under 5% of it; short enough that a fit waiting behind chunks is not held long (chunks
    # ran 2-3 times longer than timed with both processes busy; bench/starvation.py), and far
    # inside the visibility timeout.
    replicate_chunk_seconds: NonNegativeFloat = 0.25
    # Replicates per chunk at most, whatever their speed: bounds a chunk's message and result.
    replicate_chunk_max: AtLeastOne = 1000
    # Unfinished jobs allowed at once; beyond it POST /jobs answers 429 rather than
    # letting the queue and Redis grow without bound.
    max_queued: AtLeastOne = 2000
    # Origins (scheme://host:port, port "*" for any) that source.url may point at.
    # Empty (EMCOINS_SOURCE_ALLOWLIST=) allows none.
    source_allowlist: CommaList = ("http://127.0.0.1:8001",)
    # Bearer tokens the API accepts; empty means no authentication. Kept out of repr and logs.
    api_tokens: CommaList = Field(default=(), repr=False)
    # Seconds a client is told to wait between polls of a running job.
    retry_after_seconds: NonNegativeInt = 1
    # The longest wait suggested while many jobs are unfinished (one second per 200).
    retry_after_max_seconds: NonNegativeInt = 10
    # Seconds an unacknowledged task may stay with a worker before the broker gives it to
    # another: a worker that died whole (SIGKILL, lost machine) holds its tasks this long.
    # Tasks are idempotent, so a slow task redelivered while it still runs does no harm.
    visibility_timeout: NonNegativeInt = 20
    # Seconds between the workers' sweeps that give back such tasks (kombu's default
    # sweep runs about every 100 s whatever the visibility timeout).
    unacked_restore_interval: NonNegativeInt = 2
    # Seconds between the workers' sweeps for unfinished jobs that no task carries any
    # more (in no queue, with no worker): a Redis failover can lose a task the old master
    # handed out. A job found so in two sweeps in a row gets its next tasks again; 0: off.
    recovery_interval: NonNegativeInt = 15
    # Log lines of the API and workers: "json" (one object per line) or "text".
    log_format: str = "json"
    # Where clients reach the event streams (GET <events_url>/jobs/<id>/events), served by
    # their own process; empty: the API's own origin.
    events_url: str = ""
    # Redis Sentinel: "host:port,..." of the sentinels, and the name of the master they
    # watch. Empty: EMCOINS_REDIS_URL is used directly.
    redis_sentinels: CommaList = ()
    redis_master: str = "emcoins"
    # Origins a job's callback.url may point at, as source_allowlist; empty: no callbacks.
    callback_allowlist: CommaList = ()
    # Secret that signs completion callbacks (Standard Webhooks: "whsec_" + base64).
    # Kept out of repr and logs; a job with a callback needs it.
    webhook_secret: str = Field(default="", repr=False)
    # Seconds between a callback's attempts: the first is made when the job ends, each
    # later one this long after the one before (up to about an hour in all by default).
    webhook_retry_seconds: Annotated[tuple[float, ...], NoDecode] = (
        5, 30, 60, 300, 600, 900, 1800,
    )
    # Whole-exchange deadline of one callback attempt.
    webhook_timeout: NonNegativeFloat = 10.0

    @classmethod
    def error(cls, problem: ErrorDetails) -> Exception:
        """A :class:`ConfigError` naming the variable."""
        return ConfigError(_problem(problem))

    @classmethod
    def environ_source(cls, environ: Mapping[str, str]) -> PydanticBaseSettingsSource:
        """``EMCOINS_*`` variables from ``environ``."""
        return EnvironSource(cls, environ)

    @model_validator(mode="after")
    def _deadlines(self) -> Settings:
        """Deadlines that can end, and a batch that ends before it could be redelivered."""
        for name in ("fetch_deadline", "fetch_batch_deadline"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{variable(name)} must be more than 0")
        if self.fetch_batch_size > self.fetch_concurrency:
            # A batch's draws run at once on the worker's threads: never more than its share.
            raise ConfigError(
                f"{variable('fetch_batch_size')} must not exceed {variable('fetch_concurrency')}"
            )
        if self.max_json_depth < 2:
            raise ConfigError(f"{variable('max_json_depth')} must be at least 2 "
                              '({"flips": [...]} nests twice)')
        if not 0 < self.replicate_chunk_seconds <= self.visibility_timeout / 4:
            # A chunk is sized from the first replicates' speed and may run longer than
            # planned; a quarter of the timeout leaves room before it would be redelivered.
            raise ConfigError(
                f"{variable('replicate_chunk_seconds')} must be more than 0 and at most a "
                f"quarter of {variable('visibility_timeout')}"
            )
        # The fetcher gives stopped requests 0.55 s to end after the batch deadline.
        if self.fetch_batch_deadline + 0.55 >= self.visibility_timeout:
            raise ConfigError(
                f"{variable('fetch_batch_deadline')} must end well inside "
                f"{variable('visibility_timeout')}"
            )
        return self

    @field_validator("webhook_retry_seconds", mode="before")
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> Any:
        """Comma-separated seconds, each a non-negative number."""
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            try:
                value = tuple(float(item) for item in items)
            except ValueError:
                raise ConfigError(
                    f"{variable(info.field_name)} must be comma-separated seconds, got {value!r}"
                ) from None
        if any(not (0 <= v < float("inf")) for v in value):
            raise ConfigError(f"{variable(info.field_name)} must be non-negative seconds")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str, info: ValidationInfo) -> str:
        if value:
            prefix, _, encoded = value.partition("whsec_")
            try:
                valid = not prefix and bool(base64.b64decode(encoded, validate=True))
            except ValueError:
                valid = False
            if not valid:
                # The message never echoes the secret.
                raise ConfigError(f"{variable(info.field_name)} must be whsec_ plus base64")
        return value

    @field_validator(
        "source_allowlist", "callback_allowlist", "api_tokens", "redis_sentinels", mode="before"
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        """A comma-separated string as a tuple of its non-blank items."""
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("source_allowlist", "callback_allowlist")
    @classmethod
    def _origins(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        try:
            parse_allowlist(value)
        except OriginError as exc:
            raise ConfigError(f"{variable(info.field_name)}: {exc}") from None
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if any(not token or any(c.isspace() for c in token) for token in value):
            # The message never echoes a token: it is a secret.
            raise ConfigError(f"{variable(info.field_name)} entries must not contain whitespace")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str, info: ValidationInfo) -> str:
        if value not in ("json", "text"):
            raise ConfigError(f"{variable(info.field_name)} must be json or text, got {value!r}")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        """Each sentinel as host:port, the port a number from 1 to 65535."""
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"{variable(info.field_name)} must be host:port,... (a port from 1 to "
                    f"65535), got {address!r}"
                )
        return value

    @field_validator("redis_master")
    @classmethod
    def _master(cls, value: str, info: ValidationInfo) -> str:
        """The name the sentinels monitor: one word, as in ``sentinel monitor <name> ...``."""
        if not value or any(c.isspace() for c in value):
            raise ConfigError(
                f"{variable(info.field_name)} must be a name without spaces, got {value!r}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{variable(info.field_name)} must be a redis:// URL, got {value!r}")
        return value


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
