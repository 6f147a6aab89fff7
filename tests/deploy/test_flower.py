"""Flower as compose runs it, without Docker: no login unless FLOWER_BASIC_AUTH is set.

docker-compose.yml passes FLOWER_BASIC_AUTH through from the shell (unset stays unset);
these tests run ``celery flower`` on a private Redis to show what each case means.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from localstack.ports import free_port
from localstack.processes import Service
from localstack.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    """A Redis for Flower alone."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def flower(broker: RedisServer, tmp_path) -> Iterator[Callable[[str | None], str]]:
    """Start Flower with FLOWER_BASIC_AUTH unset (None) or set to a value; returns its URL."""
    started: list[Service] = []

    def start(basic_auth: str | None) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
        env["EMCOINS_REDIS_URL"] = broker.url
        if basic_auth is not None:
            env["FLOWER_BASIC_AUTH"] = basic_auth
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
                f"--port={port}", "--address=127.0.0.1"]
        service = Service(f"flower-{port}", argv, env=env, log_dir=tmp_path).start()
        started.append(service)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert service.running(), service.log_tail()
            try:
                requests.get(url, timeout=5)
                return url
            except requests.ConnectionError:
                time.sleep(0.2)
        raise TimeoutError(f"Flower did not answer on {url}:\n{service.log_tail()}")

    yield start
    for service in started:
        service.stop()


def test_without_the_variable_flower_has_no_login(flower):
    url = flower(None)
    assert requests.get(f"{url}/", timeout=10).status_code == 200


def test_with_user_and_password_flower_asks_for_them(flower):
    url = flower("user:pass")
    assert requests.get(f"{url}/", timeout=10).status_code == 401
    assert requests.get(f"{url}/", auth=("user", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{url}/", auth=("user", "pass"), timeout=10).status_code == 200


def test_an_empty_value_refuses_everyone(flower):
    # What `FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH:-}` used to pass: login on, no user.
    # The compose file passes the variable through instead, so unset stays unset.
    url = flower("")
    assert requests.get(f"{url}/", timeout=10).status_code == 401
