"""``python -m drawsource``: serve the draw source with gunicorn's threaded worker.

One worker process with many threads, not several processes: with a seed, the
draws served are one repeatable stream only if a single process plays them.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from drawsource.app import create_app
from drawsource.config import DrawSourceConfig, DrawSourceConfigError


class DrawSourceServer(BaseApplication):
    """A gunicorn application configured in code rather than from the command line."""

    def __init__(self, config: DrawSourceConfig) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": bind_address(self.config.host, self.config.port),
            "workers": 1,
            "worker_class": "gthread",
            "threads": self.config.threads,
            # Stalled requests (DRAWSOURCE_SLOW_RATE) would otherwise hold up shutdown.
            "graceful_timeout": 2,
            "proc_name": "drawsource",
        }
        # gunicorn 25+ opens a control socket at one fixed path per user; several
        # draw sources (parallel tests, say) would fight over it, and none needs it.
        if "control_socket_disable" in self.cfg.settings:
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self.config)


def bind_address(host: str, port: int) -> str:
    """gunicorn's ``host:port``, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None if a trial bind succeeds."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve host: {exc.strerror}"
    family, socktype, proto, _, address = infos[0]
    with socket.socket(family, socktype, proto) as sock:
        # Same option gunicorn sets, so the trial agrees with gunicorn about
        # sockets lingering in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "address already in use"
            return exc.strerror or str(exc)
    return None


def main() -> int:
    """Validate the settings and the port, then serve until stopped; return an exit code."""
    try:
        config = DrawSourceConfig.from_env()
    except DrawSourceConfigError as exc:
        print(f"drawsource: {exc}", file=sys.stderr)
        return 2
    problem = port_problem(config.host, config.port)
    if problem is not None:
        where = bind_address(config.host, config.port)
        print(f"drawsource: cannot listen on {where}: {problem}", file=sys.stderr)
        return 1
    DrawSourceServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
