"""Which draw sources the workers may fetch: an allow-list of origins, and addresses never fetched.

An allow-list entry is an origin, ``scheme://host[:port]``, such as ``http://127.0.0.1:8001``;
``http://127.0.0.1:*`` allows every port of that host. A URL matches an entry when scheme,
host and port are equal, with the default ports (80, 443) made explicit and hosts compared
without case. Only real ports, 1 to 65535, are ever allowed: a URL naming port 0 is refused,
since HTTP clients read port 0 as "no port" and connect to the default port instead.

A port wildcard reaches *every* service of that host, not only draw sources: on a host that
also runs the stack's Redis (6379), its API or Flower, ``http://host:*`` lets a job make the
workers send GET requests to them. Name the draw source's own port wherever you can.

Everything here is pure but :func:`refused_address`, which resolves a name through the
resolver it is given.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARD_PORT = "*"
PORTS = range(1, 65536)

# Link-local ranges hold the cloud metadata services (169.254.169.254 on AWS, GCP, Azure),
# which hand out credentials to whoever asks from inside the machine.
BLOCKED_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    # AWS's metadata service over IPv6 sits outside fe80::/10.
    ipaddress.ip_network("fd00:ec2::254/128"),
)

_ENTRY = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_][a-z0-9_.-]*)"
    r"(?::(?P<port>\d{1,5}|\*))?/?$",
    re.IGNORECASE,
)

Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class OriginError(ValueError):
    """An allow-list entry or a URL whose origin cannot be told for certain."""


@dataclass(frozen=True)
class Origin:
    """Scheme, lower-case host (IPv6 without brackets) and port; a port of None is any port."""

    scheme: str
    host: str
    port: int | None

    def allows(self, other: Origin) -> bool:
        """Whether ``other`` (a URL's origin) is this entry's origin."""
        return (
            self.scheme == other.scheme
            and self.host == other.host
            and (self.port is None or self.port == other.port)
        )

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{WILDCARD_PORT if self.port is None else self.port}"


def parse_entry(entry: str) -> Origin:
    """One allow-list entry, e.g. ``http://127.0.0.1:8001`` or ``http://127.0.0.1:*``."""
    match = _ENTRY.match(entry.strip())
    if not match:
        raise OriginError(f"{entry!r} is not an origin like http://host:port")
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{entry!r}: only http and https sources can be allowed")
    host = match["host"].lower().strip("[]")
    raw_port = match["port"]
    if raw_port == WILDCARD_PORT:
        return Origin(scheme, host, None)
    port = DEFAULT_PORTS[scheme] if raw_port is None else int(raw_port)
    if port not in PORTS:
        raise OriginError(f"{entry!r}: port {port} is out of range 1-65535")
    return Origin(scheme, host, port)


def parse_allowlist(entries: Iterable[str]) -> tuple[Origin, ...]:
    """Every entry parsed; :class:`OriginError` names the first bad one."""
    return tuple(parse_entry(entry) for entry in entries)


def url_origin(url: str) -> Origin:
    """The origin the HTTP client will connect to for ``url``.

    The URL is read by the standard library and by urllib3 (which requests uses); if they
    disagree on scheme, host or port, the URL is refused rather than guessed at. A port
    outside 1-65535 is refused too: both read ``:0`` as port 0, but the client then
    connects to the default port, which a port wildcard would wrongly let through.
    """
    try:
        split = urlsplit(url)
        theirs = parse_url(url)
        port = split.port
    except ValueError as exc:
        raise OriginError(f"{url!r} is not a valid URL: {exc}") from None
    scheme = split.scheme.lower()
    host = (split.hostname or "").lower()
    if not host:
        raise OriginError(f"{url!r} has no host")
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{url!r}: only http and https sources can be fetched")
    if port is not None and port not in PORTS:
        raise OriginError(f"{url!r}: port {port} is out of range 1-65535")
    origin = Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port)
    their_host = (theirs.host or "").lower().strip("[]")
    their_port = DEFAULT_PORTS.get(theirs.scheme or "") if theirs.port is None else theirs.port
    if ((theirs.scheme or "").lower(), their_host, their_port) != (
        origin.scheme,
        origin.host,
        origin.port,
    ):
        raise OriginError(f"{url!r} is ambiguous: its host or port reads differently to clients")
    return origin


def source_url_error(
    url: str,
    allowlist: Sequence[str],
    *,
    what: str = "draw source",
    setting: str = "EMCOINS_SOURCE_ALLOWLIST",
) -> str | None:
    """Why the workers may not reach ``url`` under ``allowlist``; None if they may.

    An entry with a port wildcard allows every port of its host: the stack's Redis, API
    and Flower included when they share that host. Only ports 1-65535 are ever allowed.
    """
    try:
        origin = url_origin(url)
    except OriginError as exc:
        return f"{exc}."
    allowed = parse_allowlist(allowlist)
    if not any(entry.allows(origin) for entry in allowed):
        listed = ", ".join(str(entry) for entry in allowed) or "none"
        return (
            f"{origin} is not an allowed {what} ({setting}; allowed: {listed})."
        )
    if _literal_blocked(origin.host):
        return f"{origin.host} is a link-local or cloud-metadata address; it is never fetched."
    return None


def is_blocked_address(address: str) -> bool:
    """Whether an IP address is link-local or a cloud metadata service (IPv4-mapped too)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in BLOCKED_NETWORKS)


def refused_address(
    host: str, port: int, *, resolve: Resolver = socket.getaddrinfo
) -> str | None:
    """The first blocked address ``host`` resolves to, or None.

    Asked just before fetching, because a name allowed at submission may point elsewhere
    by then. A name that does not resolve is not refused here: the request fails anyway.
    """
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = str(info[4][0])
        if is_blocked_address(address):
            return address
    return None


def _literal_blocked(host: str) -> bool:
    try:
        return is_blocked_address(host)
    except ValueError:
        return False  # a name, checked when it is resolved at fetch time
