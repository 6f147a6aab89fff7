"""Shared fixtures: a real Redis for the session, a clean database per test, the local stack.

The session's Redis is started before collection so that every settings object
(and the Celery app, configured at import) points at it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from localstack.ports import free_port
from localstack.processes import Service, wait_http
from localstack.redis_server import RedisServer
from localstack.stack import Stack, StackConfig
from tests.hostile_source import HostileSource
from tests.stub_http import StubServer

_SESSION_REDIS: RedisServer | None = None

# Tests start draw sources (and refusing servers) on random ports of 127.0.0.1.
TEST_ALLOWLIST = ("http://127.0.0.1:*",)


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_REDIS
    _SESSION_REDIS = RedisServer().start()
    os.environ["EMCOINS_REDIS_URL"] = _SESSION_REDIS.url


# Tests that build network namespaces or kill a Redis master on purpose run only when
# asked for by name (`pytest -m multihost`, `-m sentinel`; .ci/run does): a plain
# `pytest` or any -m expression that does not name them leaves them out.
OPT_IN_MARKERS = ("multihost", "sentinel")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the opt-in tests whose marker the ``-m`` expression does not name."""
    named = config.option.markexpr or ""
    left_out = [marker for marker in OPT_IN_MARKERS if marker not in named]
    dropped = [item for item in items if any(item.get_closest_marker(m) for m in left_out)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(dropped)
        items[:] = [item for item in items if item not in gone]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_REDIS is not None:
        _SESSION_REDIS.stop()
        _SESSION_REDIS.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """The Redis server every in-process test talks to."""
    assert _SESSION_REDIS is not None
    return _SESSION_REDIS


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an emptied database."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def app(redis_client: redis.Redis):
    """The API, built by its factory, on the session's Redis."""
    from api import create_app

    return create_app({"TESTING": True, "source_allowlist": TEST_ALLOWLIST})


@pytest.fixture
def client(app):
    """Flask's test client for :func:`app`."""
    return app.test_client()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system on free ports: its own Redis, draw source, io and cpu workers, API."""
    # The port is chosen here so that the stack's own draw source is listed first (the
    # page's default source), followed by the wildcard for the tests' extra sources.
    drawsource_port = free_port()
    allowlist = ",".join((f"http://127.0.0.1:{drawsource_port}", *TEST_ALLOWLIST))
    config = StackConfig(
        api_port=0,
        drawsource_port=drawsource_port,
        api_workers=1,
        env={
            "DRAWSOURCE_SEED": "20081",
            "EMCOINS_FETCH_BATCH_SIZE": "10",
            "EMCOINS_SOURCE_ALLOWLIST": allowlist,
        },
        log_dir=tmp_path_factory.mktemp("stack-logs"),
    )
    with Stack(config) as running:
        yield running


@pytest.fixture
def drawsource(tmp_path) -> Iterator[Callable[..., str]]:
    """Start extra draw sources with their own settings; returns the ``/draw`` URL."""
    started: list[Service] = []

    def start(**settings: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRAWSOURCE_")}
        env.update({f"DRAWSOURCE_{k.upper()}": str(v) for k, v in settings.items()})
        env.update(DRAWSOURCE_PORT=str(port), DRAWSOURCE_HOST="127.0.0.1")
        service = Service(
            f"drawsource-{port}", [sys.executable, "-m", "drawsource"], env=env, log_dir=tmp_path
        ).start()
        started.append(service)
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, service=service)
        return f"http://127.0.0.1:{port}/draw"

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def stub_source() -> Iterator[Callable[..., StubServer]]:
    """Start tiny HTTP servers answering as a test scripts them; all closed afterwards."""
    started: list[StubServer] = []

    def start(answer) -> StubServer:
        server = StubServer(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileSource]]:
    """Start misbehaving sources (tests/hostile_source.py); every one is stopped, its
    connections shut, after the test."""
    started: list[HostileSource] = []

    def start(mode: str, **options: Any) -> HostileSource:
        started.append(HostileSource(mode, **options).start())
        return started[-1]

    yield start
    for source in started:
        source.stop()
