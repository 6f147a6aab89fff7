"""Child processes of the local stack: started with their own log file, stopped as a group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests


class Service:
    """One named child process (a worker, the API, the draw source...)."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        # Set by stop(): a supervisor must not restart what was stopped on purpose.
        self.stopping = False

    def start(self) -> Service:
        """Start the process in its own session, so signals reach its children too."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        """The process id of the main process."""
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        """True while the main process is alive."""
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int, *, group: bool = True) -> None:
        """Send a signal to the process (and, with ``group``, its children)."""
        if not self.running():
            return
        try:
            if group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL it if it has not exited in time."""
        self.stopping = True
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()
        # Pool children may outlive a main process killed hard; take the group down.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http(url: str, *, timeout: float, service: Service | None = None) -> None:
    """Wait until ``url`` answers 200; fail early if the service exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service is not None and not service.running():
            raise RuntimeError(
                f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}"
            )
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    tail = f"\n{service.log_tail()}" if service is not None else ""
    raise TimeoutError(f"{url} did not become ready in {timeout:.0f} s ({last}){tail}")
