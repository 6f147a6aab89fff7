"""The whole system on one machine: a private Redis, the draw source, io and cpu workers, the API.

Used by ``make run`` / ``make demo``, by the integration tests and by the benchmarks.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from localstack.datadir import DataLock
from localstack.ports import free_port, port_is_free
from localstack.processes import Service, wait_http
from localstack.redis_server import RedisServer
from shared.config import EnvSettings, Settings

# The checkout's own data folder (git-ignored), whatever the current directory.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".emcoins"
# Variables handed to every child as they are: the service's and the draw source's settings.
PASSED_THROUGH = ("EMCOINS_", "DRAWSOURCE_")

# The StackConfig fields read by from_env, and their variables; the other fields are set
# in code only (HOST or LOG_DIR set for some other program must not move the stack).
VARIABLES = {
    "api_port": "API_PORT",
    "drawsource_port": "DRAWSOURCE_PORT",
    "events_port": "EVENTS_PORT",
    "cpu_workers": "WORKERS",
    "cpu_concurrency": "CPU_CONCURRENCY",
    "io_concurrency": "IO_CONCURRENCY",
    "api_workers": "API_WORKERS",
    "data_dir": "EMCOINS_DATA_DIR",
}

Port = Annotated[int, Field(ge=0, le=65535)]
Count = Annotated[int, Field(ge=1)]


class PortBusy(RuntimeError):
    """A port the user asked for is taken."""


class StackConfigError(ValueError):
    """A variable the local stack reads is malformed."""


class _StackEnviron(PydanticBaseSettingsSource):
    """The fields of :data:`VARIABLES` from a mapping, and the settings to pass on."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.environ.get(VARIABLES.get(field_name, "")), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        values["env"] = {k: v for k, v in self.environ.items() if k.startswith(PASSED_THROUGH)}
        return values


def _problem(error: ErrorDetails) -> str:
    """One validation error as a sentence naming the variable."""
    field = str(error["loc"][0]) if error["loc"] else "?"
    name = VARIABLES.get(field, field)
    kind, ctx = error["type"], error.get("ctx", {})
    if kind.startswith("int_"):
        return f"{name} must be an integer, got {error['input']!r}"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx['ge']}, got {error['input']!r}"
    if kind == "less_than_equal":
        return f"{name} must be at most {ctx['le']}, got {error['input']!r}"
    return f"{name}: {error['msg']}"


class StackConfig(EnvSettings):
    """What to start and where; ports of 0 mean "pick a free one".

    Built in code (tests, benchmarks) it reads no environment and keeps its data in a
    temporary folder; :meth:`from_env` reads the variables of :data:`VARIABLES`.
    """

    model_config = SettingsConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    api_port: Port = 8000
    drawsource_port: Port = 8001
    # The event streams' process (GET /jobs/<id>/events). Built in code: a free port;
    # from_env: EVENTS_PORT, else 8002 (a free port when API_PORT is 0).
    events_port: Port = 0
    cpu_workers: Count = 1
    cpu_concurrency: Count = 2
    io_concurrency: Count = 16
    api_workers: Count = 2
    api_threads: Count = 8
    # Streams one events process holds at once (gunicorn's gevent worker connections).
    events_connections: Count = 2000
    redis_appendonly: bool = True
    # Where Redis keeps jobs, results and metrics across restarts (one stack per folder).
    # None: a temporary folder, removed at stop. from_env defaults to DEFAULT_DATA_DIR, and
    # EMCOINS_DATA_DIR= (empty) means none, a throwaway stack.
    data_dir: Path | None = None
    start_drawsource: bool = True
    start_workers: bool = True
    start_events: bool = True
    # Restart a process that exits on its own, as compose's `restart: unless-stopped` does
    # (kombu can take a worker down when Redis restarts under it).
    restart_crashed: bool = True
    # Extra environment for every child: EMCOINS_* and DRAWSOURCE_* settings pass through.
    env: dict[str, str] = Field(default_factory=dict)
    log_dir: Path | None = None

    @classmethod
    def error(cls, problem: ErrorDetails) -> Exception:
        """A :class:`StackConfigError` naming the variable."""
        return StackConfigError(_problem(problem))

    @classmethod
    def environ_source(cls, environ: Mapping[str, str]) -> PydanticBaseSettingsSource:
        """The stack's own variables and the settings passed through to its children."""
        return _StackEnviron(cls, environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """Ports, scale and data folder from ``API_PORT``, ``WORKERS``, ``EMCOINS_DATA_DIR``..."""
        values = cls.environ_source(os.environ if environ is None else environ)()
        values.setdefault("data_dir", DEFAULT_DATA_DIR)
        values.setdefault("events_port", "0" if values.get("api_port") == "0" else "8002")
        return cls(**values)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Relative to where the stack was started, even in a message printed from elsewhere.
        return None if value is None else value.absolute()


class Stack:
    """Starts and stops the services of :class:`StackConfig`."""

    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig()
        self.redis: RedisServer | None = None
        self.services: dict[str, Service] = {}
        self.log_dir = self.config.log_dir or Path(tempfile.mkdtemp(prefix="emcoins-stack-"))
        self.api_port = self.config.api_port
        self.drawsource_port = self.config.drawsource_port
        self.events_port = self.config.events_port
        self.restarts: list[str] = []
        self._lock: DataLock | None = None
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.config.host}:{self.api_port}"

    @property
    def drawsource_url(self) -> str:
        """Base URL of the draw source."""
        return f"http://{self.config.host}:{self.drawsource_port}"

    @property
    def events_url(self) -> str:
        """Base URL of the event streams (``GET <events_url>/jobs/<id>/events``)."""
        return f"http://{self.config.host}:{self.events_port}"

    @property
    def api_token(self) -> str | None:
        """The token the stack's own requests send: the first of ``EMCOINS_API_TOKENS``, if any."""
        tokens = Settings.from_env(self.env()).api_tokens
        return tokens[0] if tokens else None

    def _claim_ports(self) -> None:
        host = self.config.host
        if self.api_port == 0:
            self.api_port = free_port(host)
        if self.drawsource_port == 0:
            self.drawsource_port = free_port(host)
        if self.events_port == 0:
            self.events_port = free_port(host)
        wanted = [("API_PORT", self.api_port)]
        if self.config.start_events:
            wanted.append(("EVENTS_PORT", self.events_port))
        if self.config.start_drawsource:
            wanted.append(("DRAWSOURCE_PORT", self.drawsource_port))
        for name, port in wanted:
            if not port_is_free(host, port):
                raise PortBusy(
                    f"port {port} on {host} is already in use; "
                    f"stop what listens there or set {name} to another port"
                )

    def env(self) -> dict[str, str]:
        """The environment every child gets."""
        env = dict(os.environ)
        env.update(
            {
                "EMCOINS_SOURCE_ALLOWLIST": self.drawsource_url,
                "PYTHONUNBUFFERED": "1",
                # Each prefork child runs one fit; BLAS or OpenMP threads on top of
                # them would oversubscribe the cores.
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
        )
        env.update(self.config.env)
        # Where the stack put things wins over what was asked (DRAWSOURCE_PORT=0: any port).
        env["DRAWSOURCE_HOST"] = self.config.host
        env["DRAWSOURCE_PORT"] = str(self.drawsource_port)
        if self.config.start_events:
            # The page (served by the API) reads the streams from the events process.
            env["EMCOINS_EVENTS_URL"] = self.events_url
        if self.redis is not None:
            env["EMCOINS_REDIS_URL"] = self.redis.url
        return env

    def _service(self, name: str, argv: list[str]) -> Service:
        service = Service(name, argv, env=self.env(), log_dir=self.log_dir).start()
        self.services[name] = service
        return service

    def start_worker(self, queue: str, index: int = 1) -> Service:
        """Start one Celery worker for ``queue``: "io", "cpu" (which also takes replicate
        chunks when no fit waits) or "replicates" (the chunks alone)."""
        name = f"worker-{queue}-{index}"
        argv = [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-Q", queue, "-n", f"{queue}{index}@%h", "--loglevel=INFO",
            # Gossip and mingle only slow start-up here; nothing uses them.
            "--without-gossip", "--without-mingle",
        ]
        if queue == "io":
            argv += ["-P", "threads", "-c", str(self.config.io_concurrency)]
        else:
            argv += ["-P", "prefork", "-c", str(self.config.cpu_concurrency)]
        return self._service(name, argv)

    def start_api(self) -> Service:
        """Start the API under gunicorn."""
        argv = [
            sys.executable, "-m", "gunicorn",
            "-b", f"{self.config.host}:{self.api_port}",
            "-w", str(self.config.api_workers),
            "-k", "api.errors.JSONErrorWorker", "--threads", str(self.config.api_threads),
            "--graceful-timeout", "5",
            "api:create_app()",
        ]
        return self._service("api", argv)

    def start_events(self) -> Service:
        """Start the event streams' process: gunicorn's gevent worker, where an open
        stream is a greenlet rather than a thread."""
        argv = [
            sys.executable, "-m", "gunicorn",
            "-b", f"{self.config.host}:{self.events_port}",
            "-w", "1", "-k", "gevent",
            "--worker-connections", str(self.config.events_connections),
            # Open streams do not end by themselves: cut them (clients resume) rather
            # than wait for them at a stop.
            "--graceful-timeout", "3",
            "api:create_events_app()",
        ]
        return self._service("events", argv)

    def start(self, *, timeout: float = 60.0) -> Stack:
        """Start everything and wait until the API is ready (Redis and a worker answer).

        Raises :class:`~localstack.datadir.DataDirBusy` if another stack uses the data folder.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.config.data_dir is not None:
                self._lock = DataLock(self.config.data_dir).acquire()
            self._claim_ports()
            self.redis = RedisServer(
                appendonly=self.config.redis_appendonly, data_dir=self.config.data_dir
            ).start()
            if self.config.start_drawsource:
                source = self._service("drawsource", [sys.executable, "-m", "drawsource"])
            if self.config.start_workers:
                self.start_worker("io")
                for index in range(1, self.config.cpu_workers + 1):
                    self.start_worker("cpu", index)
            api = self.start_api()
            if self.config.start_events:
                events = self.start_events()
            if self.config.start_drawsource:
                wait_http(f"{self.drawsource_url}/healthz", timeout=timeout, service=source)
            ready = "/readyz" if self.config.start_workers else "/healthz"
            wait_http(f"{self.api_url}{ready}", timeout=timeout, service=api)
            if self.config.start_events:
                wait_http(f"{self.events_url}/healthz", timeout=timeout, service=events)
        except BaseException:
            self.stop()
            raise
        if self.config.restart_crashed:
            self.supervise()
        return self

    def supervise(self) -> None:
        """Watch the services in a thread and restart any that exits on its own."""
        if self._watcher is not None:
            return
        self._watching.set()
        self._watcher = threading.Thread(target=self._watch, name="stack-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self._watching.is_set():
            for name, service in list(self.services.items()):
                if self._watching.is_set() and not service.running() and not service.stopping:
                    code = service.process.returncode if service.process else None
                    print(f"{name} exited ({code}); restarting it", file=sys.stderr, flush=True)
                    self.restarts.append(name)
                    self.services[name] = Service(
                        name, service.argv, env=service.env, log_dir=self.log_dir
                    ).start()
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every service, then Redis (which writes its log out), then release the folder."""
        self._watching.clear()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        for service in reversed(list(self.services.values())):
            service.stop()
        self.services.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis.cleanup()
            self.redis = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
