"""The whole system on one machine: a private Redis, the draw source, io and cpu workers, the API.

Used by ``make run`` / ``make demo``, by the integration tests and by the benchmarks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from localstack.ports import free_port, port_is_free
from localstack.processes import Service, wait_http
from localstack.redis_server import RedisServer


class PortBusy(RuntimeError):
    """A port the user asked for is taken."""


@dataclasses.dataclass
class StackConfig:
    """What to start and where; ports of 0 mean "pick a free one"."""

    host: str = "127.0.0.1"
    api_port: int = 8000
    drawsource_port: int = 8001
    cpu_workers: int = 1
    cpu_concurrency: int = 2
    io_concurrency: int = 16
    api_workers: int = 2
    api_threads: int = 8
    redis_appendonly: bool = True
    start_drawsource: bool = True
    start_workers: bool = True
    # Restart a process that exits on its own, as compose's `restart: unless-stopped` does
    # (kombu can take a worker down when Redis restarts under it).
    restart_crashed: bool = True
    # Extra environment for every child: EMCOINS_* and DRAWSOURCE_* settings pass through.
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    log_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """Ports and scale from ``API_PORT``, ``DRAWSOURCE_PORT``, ``WORKERS`` and the like."""
        environ = os.environ if environ is None else environ
        values = {}
        for field, name in (
            ("api_port", "API_PORT"),
            ("drawsource_port", "DRAWSOURCE_PORT"),
            ("cpu_workers", "WORKERS"),
            ("cpu_concurrency", "CPU_CONCURRENCY"),
            ("io_concurrency", "IO_CONCURRENCY"),
            ("api_workers", "API_WORKERS"),
        ):
            if environ.get(name, "").strip():
                try:
                    values[field] = int(environ[name])
                except ValueError:
                    raise ValueError(f"{name} must be an integer, got {environ[name]!r}") from None
        passed = {
            k: v for k, v in environ.items() if k.startswith(("EMCOINS_", "DRAWSOURCE_"))
        }
        return cls(env=passed, **values)


class Stack:
    """Starts and stops the services of :class:`StackConfig`."""

    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig()
        self.redis: RedisServer | None = None
        self.services: dict[str, Service] = {}
        self.log_dir = self.config.log_dir or Path(tempfile.mkdtemp(prefix="emcoins-stack-"))
        self.api_port = self.config.api_port
        self.drawsource_port = self.config.drawsource_port
        self.restarts: list[str] = []
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

    def _claim_ports(self) -> None:
        host = self.config.host
        if self.api_port == 0:
            self.api_port = free_port(host)
        if self.drawsource_port == 0:
            self.drawsource_port = free_port(host)
        wanted = [("API_PORT", self.api_port)]
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
        if self.redis is not None:
            env["EMCOINS_REDIS_URL"] = self.redis.url
        return env

    def _service(self, name: str, argv: list[str]) -> Service:
        service = Service(name, argv, env=self.env(), log_dir=self.log_dir).start()
        self.services[name] = service
        return service

    def start_worker(self, queue: str, index: int = 1) -> Service:
        """Start one Celery worker for ``queue`` ("io" or "cpu")."""
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
            "-k", "gthread", "--threads", str(self.config.api_threads),
            "--graceful-timeout", "5",
            "api:create_app()",
        ]
        return self._service("api", argv)

    def start(self, *, timeout: float = 60.0) -> Stack:
        """Start everything and wait until the API is ready (Redis and a worker answer)."""
        self._claim_ports()
        try:
            self.redis = RedisServer(appendonly=self.config.redis_appendonly).start()
            if self.config.start_drawsource:
                source = self._service("drawsource", [sys.executable, "-m", "drawsource"])
            if self.config.start_workers:
                self.start_worker("io")
                for index in range(1, self.config.cpu_workers + 1):
                    self.start_worker("cpu", index)
            api = self.start_api()
            if self.config.start_drawsource:
                wait_http(f"{self.drawsource_url}/healthz", timeout=timeout, service=source)
            ready = "/readyz" if self.config.start_workers else "/healthz"
            wait_http(f"{self.api_url}{ready}", timeout=timeout, service=api)
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
        """Stop every service, then Redis."""
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

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
