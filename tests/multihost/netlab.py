"""Test hosts made of network namespaces, joined by a bridge in a namespace of their own.

Everything lives in namespaces this module creates: the bridge and one end of each veth
pair sit in the lab's "switch" namespace, the other end is ``eth0`` of a host namespace.
Nothing is added to the namespace the tests run in, hosts get no default route, and the
addresses come from 198.18.0.0/15 (RFC 2544, set aside for network test beds), so no
packet can leave the lab. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from localstack.processes import Service

T = TypeVar("T")

SUBNET_PREFIX = "198.18.0."
PREFIX_LEN = 24
CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    """Run one ``ip`` command; raise with its stderr if it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def can_build_labs() -> str | None:
    """Why this machine cannot build a lab, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return None


class Lab:
    """A switch namespace with a bridge, and host namespaces plugged into it."""

    def __init__(self, tag: str | None = None):
        self.tag = tag or f"emcmh{os.getpid()}"
        self.switch = f"{self.tag}-switch"
        self.hosts: dict[str, str] = {}  # host name -> address
        self.namespaces: list[str] = []
        self.services: list[Service] = []

    def ns(self, host: str) -> str:
        """The namespace name of ``host``."""
        return f"{self.tag}-{host}"

    def port(self, host: str) -> str:
        """The switch-side interface of ``host``'s link (at most 15 characters)."""
        return f"p-{host}"[:15]

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def create(self) -> Lab:
        """Create the switch namespace and its bridge."""
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        return self

    def add_host(self, host: str) -> str:
        """Create ``host``'s namespace, wire it to the bridge, and return its address."""
        address = f"{SUBNET_PREFIX}{len(self.hosts) + 2}"
        name = self.ns(host)
        self._add_namespace(name)
        port = self.port(host)
        # Both ends are created inside the lab: the pair is made in the switch namespace
        # and its peer moved straight into the host's.
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", name)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", name, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        self.hosts[host] = address
        return address

    def set_link(self, host: str, *, up: bool) -> None:
        """Plug or unplug ``host``'s cable at the switch."""
        ip("-n", self.switch, "link", "set", self.port(host), "up" if up else "down")

    def start(
        self, host: str, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path
    ) -> Service:
        """Start ``argv`` inside ``host``'s namespace (``ip netns exec``), logging to a file."""
        service = Service(
            f"{host}-{name}", ["ip", "netns", "exec", self.ns(host), *argv], env=env,
            log_dir=log_dir,
        ).start()
        self.services.append(service)
        return service

    def client(self, host: str) -> NetnsExecutor:
        """Run calls in a thread that lives in ``host``'s namespace (the test's own client)."""
        return NetnsExecutor(self.ns(host))

    def destroy(self) -> None:
        """Stop every process started in the lab, then delete its namespaces."""
        for service in reversed(self.services):
            service.stop(timeout=10)
        self.services.clear()
        errors = []
        for name in reversed(self.namespaces):
            try:
                self._kill_leftovers(name)
                ip("netns", "del", name)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                errors.append(str(exc))
        self.namespaces.clear()
        if errors:
            raise RuntimeError("could not remove the lab: " + "; ".join(errors))

    @staticmethod
    def _kill_leftovers(name: str) -> None:
        # Only processes inside a namespace this lab made can be listed here.
        result = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30
        )
        for pid in result.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            check = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            if not check.stdout.split():
                return
            time.sleep(0.1)

    def __enter__(self) -> Lab:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()


def existing_namespaces() -> set[str]:
    """Names of the named network namespaces on this machine."""
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip()}


def _enter(namespace: str) -> None:
    """Move the calling thread into ``namespace`` (setns affects this thread only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NetnsExecutor:
    """One worker thread inside a namespace; sockets it opens belong to that namespace."""

    def __init__(self, namespace: str):
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netns-{namespace}",
            initializer=_enter, initargs=(namespace,),
        )

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run ``fn`` in the namespace's thread and return its result."""
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        """Stop the thread."""
        self._pool.shutdown(wait=True)
