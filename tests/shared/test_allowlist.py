"""The draw-source allow-list: origins compared exactly, a port wildcard, blocked addresses."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.allowlist import (
    Origin,
    OriginError,
    is_blocked_address,
    parse_entry,
    refused_address,
    source_url_error,
    url_origin,
)
from shared.config import Settings
from shared.errors import ConfigError

BUNDLED = ("http://127.0.0.1:8001",)


@pytest.mark.parametrize(
    ("entry", "origin"),
    [
        ("http://127.0.0.1:8001", Origin("http", "127.0.0.1", 8001)),
        ("http://127.0.0.1:8001/", Origin("http", "127.0.0.1", 8001)),
        ("HTTP://DrawSource:8001", Origin("http", "drawsource", 8001)),
        ("http://drawsource", Origin("http", "drawsource", 80)),
        ("https://draws.example", Origin("https", "draws.example", 443)),
        ("http://127.0.0.1:*", Origin("http", "127.0.0.1", None)),
        ("http://[::1]:8001", Origin("http", "::1", 8001)),
    ],
)
def test_entries_make_default_ports_explicit(entry, origin):
    assert parse_entry(entry) == origin


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("ftp://127.0.0.1:21", "only http and https"),
        ("file:///etc", "not an origin"),
        ("http://127.0.0.1:8001/draw", "not an origin"),
        ("127.0.0.1:8001", "not an origin"),
        ("http://127.0.0.1:0", "out of range"),
        ("http://127.0.0.1:65536", "out of range"),
        ("http://*:8001", "not an origin"),
        ("http://user@127.0.0.1:8001", "not an origin"),
    ],
)
def test_bad_entries_are_refused(entry, fragment):
    with pytest.raises(OriginError, match=fragment):
        parse_entry(entry)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8001/draw", True),
        ("http://127.0.0.1:8001", True),
        ("http://127.0.0.1:8001/draw?x=1#y", True),
        ("http://127.0.0.1:8002/draw", False),  # another port
        ("https://127.0.0.1:8001/draw", False),  # another scheme
        ("http://localhost:8001/draw", False),  # another name for the same host
        ("http://127.0.0.1/draw", False),  # port 80
        ("http://127.0.0.1:8001@evil.example/draw", False),  # userinfo, host is evil.example
        ("http://evil.example#@127.0.0.1:8001/draw", False),
        ("http://evil.example\\@127.0.0.1:8001/draw", False),  # clients disagree: refused
        ("ftp://127.0.0.1:8001/draw", False),
        ("gopher://127.0.0.1:8001/_", False),
        ("http:///draw", False),
        ("http://127.0.0.1:99999/draw", False),
    ],
)
def test_urls_compare_scheme_host_and_port(url, allowed):
    assert (source_url_error(url, BUNDLED) is None) is allowed


def test_hosts_compare_without_case_and_default_ports_are_explicit():
    allowlist = ("https://Draws.Example", "http://drawsource:80")
    assert source_url_error("https://draws.example:443/draw", allowlist) is None
    assert source_url_error("https://DRAWS.example/draw", allowlist) is None
    assert source_url_error("http://drawsource/draw", allowlist) is None
    assert source_url_error("http://draws.example/draw", allowlist) is not None
    assert source_url_error("https://draws.example:8443/draw", allowlist) is not None


def test_the_port_wildcard_allows_any_port_of_that_scheme_and_host_only():
    allowlist = ("http://127.0.0.1:*",)
    for port in (1, 80, 8001, 54321, 65535):
        assert source_url_error(f"http://127.0.0.1:{port}/draw", allowlist) is None
    assert source_url_error("http://127.0.0.1/draw", allowlist) is None
    assert source_url_error("https://127.0.0.1:8001/draw", allowlist) is not None
    assert source_url_error("http://127.0.0.2:8001/draw", allowlist) is not None
    assert source_url_error("http://localhost:8001/draw", allowlist) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:0/draw",
        "http://127.0.0.1:00/draw",
        "https://127.0.0.1:0/draw",
        "http://127.0.0.1:65536/draw",
        "http://127.0.0.1:99999/draw",
        "http://[::1]:0/draw",
    ],
)
def test_a_wildcard_never_allows_a_port_outside_1_to_65535(url):
    # Port 0 would make the client connect to the default port (80 or 443) instead.
    allowlist = ("http://127.0.0.1:*", "https://127.0.0.1:*", "http://[::1]:*")
    error = source_url_error(url, allowlist)
    assert error is not None and url in error
    with pytest.raises(OriginError):
        url_origin(url)


def test_port_zero_is_named_as_out_of_range():
    assert "port 0 is out of range 1-65535" in source_url_error(
        "http://127.0.0.1:0/draw", ("http://127.0.0.1:*",)
    )


def test_the_wildcard_is_documented_as_reaching_every_port_of_its_host():
    import shared.allowlist as allowlist

    assert "Redis" in allowlist.__doc__ and "every" in allowlist.__doc__
    assert "Redis" in source_url_error.__doc__


def test_a_refusal_names_the_setting_and_what_is_allowed():
    message = source_url_error("http://10.0.0.5:8001/draw", BUNDLED)
    assert "http://10.0.0.5:8001" in message
    assert "EMCOINS_SOURCE_ALLOWLIST" in message and "http://127.0.0.1:8001" in message
    assert "none" in source_url_error("http://127.0.0.1:8001/draw", ())


def test_a_link_local_literal_is_refused_even_when_allowed():
    allowlist = ("http://169.254.169.254", "http://[fe80::1]:8001")
    assert "link-local" in source_url_error("http://169.254.169.254/latest/", allowlist)
    assert "link-local" in source_url_error("http://[fe80::1]:8001/draw", allowlist)


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    port=st.integers(1, 65535),
    other=st.integers(1, 65535),
    path=st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,3}", fullmatch=True),
)
def test_exact_origins_match_only_their_own_port(scheme, host, port, other, path):
    allowlist = (f"{scheme}://{host.upper()}:{port}",)
    assert source_url_error(f"{scheme}://{host}:{port}{path}", allowlist) is None
    assert url_origin(f"{scheme}://{host}:{port}{path}") == Origin(scheme, host, port)
    if other != port:
        assert source_url_error(f"{scheme}://{host}:{other}{path}", allowlist) is not None
    wildcard = (f"{scheme}://{host}:*",)
    assert source_url_error(f"{scheme}://{host}:{other}{path}", wildcard) is None


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("169.254.169.254", True),  # AWS, GCP and Azure metadata
        ("169.254.0.0", True),
        ("169.254.255.255", True),
        ("169.253.255.255", False),
        ("169.255.0.0", False),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("febf:ffff::1", True),  # last block of fe80::/10
        ("fec0::1", False),
        ("::ffff:169.254.169.254", True),  # IPv4-mapped
        ("fd00:ec2::254", True),  # AWS metadata over IPv6
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("::1", False),
    ],
)
def test_link_local_and_metadata_addresses_are_blocked(address, blocked):
    assert is_blocked_address(address) is blocked


def fake_resolver(*addresses: str, calls: list | None = None):
    """A getaddrinfo stand-in answering the given addresses for any name."""

    def resolve(host, port, family=0, type=0):
        if calls is not None:
            calls.append((host, port))
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


def test_a_name_resolving_to_a_metadata_address_is_refused():
    calls: list = []
    resolver = fake_resolver("10.0.0.7", "169.254.169.254", calls=calls)
    assert refused_address("drawsource", 8001, resolve=resolver) == "169.254.169.254"
    assert calls == [("drawsource", 8001)]
    assert refused_address("drawsource", 8001, resolve=fake_resolver("fe80::9")) == "fe80::9"


def test_a_name_resolving_to_ordinary_addresses_is_not_refused():
    assert refused_address("drawsource", 8001, resolve=fake_resolver("10.0.0.7", "::1")) is None


def test_a_name_that_does_not_resolve_is_left_to_the_request():
    def fails(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    assert refused_address("nowhere.invalid", 80, resolve=fails) is None


def test_the_real_resolver_sees_a_literal_metadata_address():
    assert refused_address("169.254.169.254", 80) == "169.254.169.254"
    assert refused_address("127.0.0.1", 80) is None


def test_settings_read_the_allowlist_and_default_to_the_bundled_source():
    assert Settings().source_allowlist == BUNDLED
    settings = Settings.from_env(
        {"EMCOINS_SOURCE_ALLOWLIST": "http://drawsource:8001, http://127.0.0.1:*"}
    )
    assert settings.source_allowlist == ("http://drawsource:8001", "http://127.0.0.1:*")
    assert Settings.from_env({"EMCOINS_SOURCE_ALLOWLIST": ""}).source_allowlist == ()


@pytest.mark.parametrize("value", ["file:///etc/passwd", "http://x:8001/draw", "x"])
def test_a_bad_allowlist_entry_is_a_config_error_naming_the_variable(value):
    with pytest.raises(ConfigError, match="EMCOINS_SOURCE_ALLOWLIST"):
        Settings.from_env({"EMCOINS_SOURCE_ALLOWLIST": value})
