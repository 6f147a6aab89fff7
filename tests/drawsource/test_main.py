"""``python -m drawsource`` as a real process: it serves, and refuses a busy port clearly."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from drawsource.coins import CoinPlayer
from shared.draws import parse_draw_payload

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def drawsource_env(**settings: str) -> dict[str, str]:
    # Start from a clean slate so DRAWSOURCE_* set by whoever runs the tests do not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAWSOURCE_")}
    env.update({f"DRAWSOURCE_{k.upper()}": v for k, v in settings.items()})
    return env


def run_module(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drawsource"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def serve(tmp_path: Path, **settings: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``python -m drawsource`` until healthy; yield its base URL and process."""
    port = free_port()
    log = (tmp_path / "drawsource.log").open("wb")
    env = drawsource_env(port=str(port), **settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "drawsource"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"drawsource exited with {proc.returncode}: {_read(tmp_path)}")
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"drawsource not healthy in {STARTUP_TIMEOUT}s: {_read(tmp_path)}")
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _read(tmp_path: Path) -> str:
    return (tmp_path / "drawsource.log").read_text(errors="replace")[-2000:]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A running ``python -m drawsource`` with seed 2024 in list format."""
    with serve(tmp_path, seed="2024", format="list", threads="32") as running:
        yield running


def test_module_serves_the_seeded_stream_to_concurrent_clients(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, proc = served
    reference = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=2024)
    with requests.Session() as session:
        assert session.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        config = session.get(f"{base}/config", timeout=5).json()
        assert config["coins"] == [0.3, 0.7]
        assert config["seed"] == 2024

        sequential = [session.get(f"{base}/draw", timeout=5).json() for _ in range(10)]
        assert sequential == [{"flips": reference.draw()} for _ in range(10)]

    def fetch(_: int) -> dict:
        response = requests.get(f"{base}/draw", timeout=10)
        assert response.status_code == 200
        return response.json()

    with ThreadPoolExecutor(max_workers=32) as pool:
        concurrent = list(pool.map(fetch, range(64)))
    for payload in concurrent:
        assert parse_draw_payload(payload)[1] == 10
    # Requests race each other, so only the set of draws served is fixed, not the order.
    expected = [reference.draw() for _ in range(64)]
    assert sorted(p["flips"] for p in concurrent) == sorted(expected)

    proc.terminate()
    assert proc.wait(timeout=15) == 0


def test_module_answers_many_requests_at_once(tmp_path: Path) -> None:
    latency, clients = 0.5, 48
    with serve(tmp_path, latency_ms=str(latency * 1000)) as (base, _):

        def fetch(_: int) -> int:
            return requests.get(f"{base}/draw", timeout=30).status_code

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            statuses = list(pool.map(fetch, range(clients)))
        elapsed = time.perf_counter() - start
    assert statuses == [200] * clients
    # One at a time would take clients * latency = 24 s; 64 threads overlap the delays.
    assert latency <= elapsed < clients * latency / 4


def test_busy_port_exits_nonzero_with_a_one_line_message() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = run_module(drawsource_env(port=str(port)))
    assert result.returncode != 0
    message = result.stderr.strip()
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert str(port) in message
    assert "already in use" in message


def test_bad_setting_exits_nonzero_naming_the_variable() -> None:
    result = run_module(drawsource_env(coins="0.3,1.7", port=str(free_port())))
    assert result.returncode != 0
    message = result.stderr.strip()
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert "DRAWSOURCE_COINS" in message
