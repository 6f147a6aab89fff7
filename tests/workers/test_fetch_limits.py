"""A hostile draw source cannot hold the fetcher past its deadlines, nor grow its memory.

Every source here is a :class:`tests.hostile_source.HostileSource` on 127.0.0.1. Fetches run
in a thread (or a fresh process, to measure memory) so that a fetcher ignoring its bounds
fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.errors import InvalidDrawError
from workers.fetch import _CHUNK, Cancelled, DrawFetcher, SourceUnavailable, make_session

ROOT = Path(__file__).resolve().parents[2]
# Slack over a stated bound: a poll interval, thread wake-ups, a loaded CI machine.
MARGIN = 0.6


def fetcher(**overrides: Any) -> DrawFetcher:
    settings = Settings(
        **{
            "fetch_deadline": 1.0,
            "fetch_batch_deadline": 10.0,
            "fetch_read_timeout": 5.0,
            "fetch_attempts": 1,
            "fetch_backoff": 0.0,
            **overrides,
        }
    )
    return DrawFetcher(make_session(settings.fetch_concurrency), settings)


def bounded(call: Callable[[], Any], limit: float) -> dict[str, Any]:
    """Run ``call`` in a thread: its ``result`` or ``error``, and ``took`` seconds.

    Fails the test if it still runs after ``limit`` seconds (the thread is left behind,
    and freed when the fixture stops the source).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        box["took"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still fetching after {limit} s"
    return box


def wait_until(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition()`` holds; fails after ``limit``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"not within {limit} s"
        time.sleep(0.01)
    return time.monotonic() - start


# --- deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["trickle", "slow-headers"])
def test_a_trickling_source_fails_the_draw_within_its_deadline(hostile, mode):
    # A byte every 0.2 s beats the 5 s read time-out on every read, for ever.
    source = hostile(mode, interval=0.2)
    outcome = bounded(lambda: fetcher().fetch_one(source.url, 4), limit=1.0 + 5)
    error = outcome.get("error")
    assert isinstance(error, SourceUnavailable), outcome
    assert "draw 4" in str(error) and "EMCOINS_FETCH_DEADLINE" in str(error)
    assert error.url == source.url and error.index == 4
    assert outcome["took"] < 1.0 + MARGIN, outcome
    # The socket is shut, not merely forgotten: the source sees its client gone.
    wait_until(lambda: source.active == 0, limit=1.0)


def test_each_attempt_has_its_own_deadline_and_timed_out_attempts_are_retried(hostile):
    source = hostile("trickle", interval=0.1)
    draws = fetcher(fetch_deadline=0.5, fetch_attempts=3)
    outcome = bounded(lambda: draws.fetch_one(source.url, 0), limit=3 * 0.5 + 5)
    assert isinstance(outcome.get("error"), SourceUnavailable), outcome
    assert "after 3 attempts" in str(outcome["error"])
    assert 3 * 0.5 <= outcome["took"] < 3 * 0.5 + MARGIN, outcome
    assert source.connections == 3


def test_a_batch_of_30_against_a_trickling_source_ends_within_the_batch_deadline(hostile):
    source = hostile("trickle", interval=0.2)
    # Attempts would go on for 10 x 5 s; the batch deadline ends them all at 2 s.
    draws = fetcher(fetch_deadline=5.0, fetch_attempts=10, fetch_batch_deadline=2.0)
    outcome = bounded(lambda: draws.fetch(source.url, range(60, 90)), limit=2.0 + 5)
    error = outcome.get("error")
    assert isinstance(error, SourceUnavailable), outcome
    assert "EMCOINS_FETCH_BATCH_DEADLINE" in str(error) and error.index == 60
    assert 2.0 <= outcome["took"] < 2.0 + MARGIN, outcome
    assert source.connections == 30
    wait_until(lambda: source.active == 0, limit=1.0)


def test_the_default_batch_bound_is_inside_the_visibility_timeout():
    from workers.fetch import POLL_SECONDS

    settings = Settings()
    # fetch_batch_deadline, one poll, and the grace given to aborted requests (0.5 s).
    assert settings.fetch_batch_deadline + POLL_SECONDS + 0.5 < settings.visibility_timeout


def test_cancelling_shuts_the_requests_in_flight_within_a_second(hostile):
    source = hostile("trickle", interval=0.2)
    draws = fetcher(fetch_deadline=30.0, fetch_batch_deadline=60.0, visibility_timeout=90)
    flag = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            draws.fetch(source.url, range(10), cancelled=flag.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: source.active == 10, limit=5.0)  # every draw is being read
    flag.set()
    cancelled_at = time.monotonic()
    thread.join(1.0)
    assert not thread.is_alive(), "the fetch went on after the job was cancelled"
    assert isinstance(box.get("error"), Cancelled), box
    assert box["ended"] - cancelled_at < 1.0
    # In-flight requests are closed, not left reading until their deadline.
    wait_until(lambda: source.active == 0, limit=2.0)
    assert time.monotonic() - cancelled_at < 1.0


# --- what a source sends -----------------------------------------------------------------


def test_json_nested_deep_is_invalid_draws_not_a_recursion_error(hostile):
    source = hostile("nested", depth=100_000)
    outcome = bounded(lambda: fetcher().fetch(source.url, range(3)), limit=5)
    error = outcome.get("error")
    assert isinstance(error, InvalidDrawError), outcome
    assert "nested" in str(error) and "EMCOINS_MAX_JSON_DEPTH" in str(error)
    assert error.index in range(3) and f"draw {error.index}" in str(error)


def test_a_fetched_draw_over_max_flips_is_invalid_and_named(hostile):
    source = hostile("normal", flips="HT" * 500 + "H")
    draws = fetcher(max_flips=1000, fetch_concurrency=1, fetch_batch_size=1)
    outcome = bounded(lambda: draws.fetch(source.url, range(5, 8)), limit=5)
    error = outcome.get("error")
    assert isinstance(error, InvalidDrawError), outcome
    assert error.index == 5
    assert "draw 5 has 1001 flips" in str(error) and "EMCOINS_MAX_FLIPS" in str(error)


def test_a_fetched_draw_of_exactly_max_flips_is_accepted(hostile):
    source = hostile("normal", flips="HT" * 500)
    assert fetcher(max_flips=1000).fetch(source.url, range(2)) == [(500, 1000)] * 2


def test_a_declared_length_over_the_cap_is_refused_before_reading(hostile):
    source = hostile("oversized", flips=10_000_000, declare_length=True)
    outcome = bounded(lambda: fetcher().fetch_one(source.url, 1), limit=5)
    assert isinstance(outcome.get("error"), InvalidDrawError), outcome
    assert "Content-Length is 10000013" in str(outcome["error"])
    assert source.bytes_sent < 10_000_000


# Run in a fresh interpreter, so that its peak memory (VmHWM) is this fetch's alone.
CHILD = """
import json, resource, sys, time
from shared.config import Settings
from workers.fetch import DrawFetcher, make_session

def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

normal, hostile = sys.argv[1], sys.argv[2]
settings = Settings(fetch_attempts=1, fetch_deadline=10.0, fetch_batch_deadline=20.0,
                    visibility_timeout=30)
fetcher = DrawFetcher(make_session(4), settings)
fetcher.fetch(normal, range(4))  # threads, pool and imports in place: the baseline
# A fetcher reading everything would take the machine down: with 2 GiB of address space
# more than now, it fails with MemoryError instead.
room = (status_kib("VmSize") << 10) + (2 << 30)
resource.setrlimit(resource.RLIMIT_AS, (room, room))
before = status_kib("VmHWM")
start = time.monotonic()
try:
    fetcher.fetch(hostile, range(4))
    outcome = {"error": None, "message": ""}
except BaseException as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
outcome.update(seconds=time.monotonic() - start, before_kib=before, after_kib=status_kib("VmHWM"))
print(json.dumps(outcome))
"""


def fetch_in_child(normal: str, hostile_url: str) -> dict[str, Any]:
    """Fetch 4 draws from ``hostile_url`` in a new process; its outcome and peak memory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, normal, hostile_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{hostile_url}: {outcome}")  # the measured bounds, shown with pytest -s
    return outcome


@pytest.mark.parametrize(
    ("mode", "options", "cause"),
    [
        ("endless", {}, "goes on past that"),
        ("gzip-bomb", {}, "gzip inflates past that"),
        ("oversized", {"flips": 100_000_000}, "goes on past that"),
    ],
)
def test_a_huge_answer_fails_quickly_and_memory_grows_under_100_mb(hostile, mode, options, cause):
    normal = hostile("normal")
    source = hostile(mode, **options)
    outcome = fetch_in_child(normal.url, source.url)
    assert outcome["error"] == "InvalidDrawError", outcome
    assert "EMCOINS_MAX_FLIPS" in outcome["message"] and cause in outcome["message"]
    assert outcome["seconds"] < 3, outcome
    grown_mib = (outcome["after_kib"] - outcome["before_kib"]) / 1024
    assert grown_mib < 100, outcome


# --- large answers take turns ------------------------------------------------------------

# What a stalling draw sends before it stalls, and what the batch's own objects (sockets,
# responses, futures) may hold besides the answers: 0.45 MiB measured for 30 normal draws.
STALLED_ANSWER = 2 * 1024 * 1024
OWN_OBJECTS = 1024 * 1024


@pytest.mark.parametrize("turns", [2, 12])
def test_only_so_many_draws_read_a_large_answer_at_once(hostile, turns):
    # Twelve draws each get 2 MiB at once, then nothing: a draw with a turn holds its
    # answer until its attempt's deadline, the others wait for a turn with a chunk or two.
    draws = 12
    source = hostile("stalling", flips=STALLED_ANSWER)
    fetch = fetcher(fetch_large_answers=turns, fetch_deadline=8.0)
    fetch.fetch(hostile("normal").url, range(draws))  # the pool's threads in place
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fetch.fetch(source.url, range(draws))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        thread.start()

        def held() -> int:
            return tracemalloc.get_traced_memory()[0] - base

        # The draws with a turn read their whole answers; then the others reach their wait.
        wait_until(lambda: held() >= turns * STALLED_ANSWER, limit=5)
        time.sleep(0.5)
        holding = held()
    finally:
        tracemalloc.stop()
        source.stop()
    thread.join(10)
    assert not thread.is_alive(), "the fetch went on after its source stopped"
    print(f"{turns} turns: {holding / 2**20:.1f} MiB held")
    # Stopped, the source shuts its answers, which have no framing: cut short, or not JSON.
    assert isinstance(box.get("error"), (SourceUnavailable, InvalidDrawError)), box
    # Without turns this would be the whole 24 MiB, as it is with one for each draw.
    assert holding < turns * (STALLED_ANSWER + 2 * _CHUNK) + draws * 2 * _CHUNK + OWN_OBJECTS


def test_a_turn_is_handed_on_when_its_draw_ends(hostile):
    # Six draws of 200,000 flips (over one chunk each) through one turn: all of them in.
    source = hostile("normal", flips="HT" * 100_000)
    outcome = bounded(lambda: fetcher(fetch_large_answers=1).fetch(source.url, range(6)),
                      limit=10)
    assert outcome.get("result") == [(100_000, 200_000)] * 6, outcome
