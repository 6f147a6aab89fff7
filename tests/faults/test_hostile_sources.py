"""A hostile draw source cannot hurt the service: its job fails within a stated bound, the
io worker's memory stays put, other jobs keep flowing, and a cancel stops its fetches.

Every source here is a :class:`tests.hostile_source.HostileSource` on 127.0.0.1, fetched by
the real io worker (``-P threads``, one process) of a fresh stack. The bounds are the ones
the README's Operations section states; ``pytest -s`` prints what was measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.hostile_source import HostileSource
from tests.integration.helpers import submit, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# The defaults the README states: EMCOINS_FETCH_BATCH_DEADLINE, and the answer cap
# 3 x EMCOINS_MAX_FLIPS + 64 KiB (bytes, after decompression).
BATCH_DEADLINE = 12.0
ANSWER_CAP = 3 * 1_000_000 + 64 * 1024
# Slack over a stated time bound on a shared, noisy 2-core machine: polling, a task
# waiting for a worker thread, the fetcher's 0.5 s grace for aborted requests.
SLACK = 4.0
MIB = 1024 * 1024
# Past this growth the source is shut, so a fetcher that reads without a cap fails the
# test instead of taking the machine down.
RUNAWAY = 1024 * MIB


def status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


def wait_until(condition: Callable[[], bool], limit: float, what: str) -> float:
    """Seconds until ``condition()`` holds, polled every 10 ms; fails after ``limit``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"{what}: not within {limit} s"
        time.sleep(0.01)
    return time.monotonic() - start


def timed_job(api: str, body: dict, *, timeout: float) -> tuple[dict, float]:
    """Submit a job and wait for it: its final body and the seconds from POST to final."""
    start = time.monotonic()
    job = submit(api, body)
    done = wait_for(api, job, timeout=timeout)
    return done, time.monotonic() - start


def normal_job(stack) -> dict:
    """A 30-draw job from the stack's own draw source."""
    return {"source": {"url": stack.drawsource_url + "/draw", "draws": 30}, "methods": ["em"]}


# --- 1. a trickling source --------------------------------------------------------------


def test_a_trickling_source_fails_its_job_within_the_batch_deadline(fault_stack, hostile):
    # One byte every 0.2 s: every read beats the stack's 1 s read timeout, the answer never
    # ends. Only the whole-exchange and batch deadlines can end it.
    source = hostile("trickle", interval=0.2)
    done, took = timed_job(
        fault_stack.api_url,
        {"source": {"url": source.url, "draws": 30}},
        timeout=BATCH_DEADLINE + SLACK + 10,
    )
    print(f"trickle: failed after {took:.2f} s, {source.connections} connections")
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "source_unavailable", done["error"]
    assert source.url in done["error"]["message"]
    assert "EMCOINS_FETCH_BATCH_DEADLINE" in done["error"]["message"]
    assert BATCH_DEADLINE - 0.5 < took < BATCH_DEADLINE + SLACK
    # It holds no connection (nor the thread reading it) past the failure.
    wait_until(lambda: source.active == 0, 2.0, "connections still open after the failure")


# 60 trickling draws are two batches: more than one batch's share of draw threads
# (EMCOINS_FETCH_CONCURRENCY, 32). The io worker's pool has a share for each batch it runs
# at once, so a normal job's draws still find threads.
@pytest.mark.parametrize("trickling_draws", [30, 60])
def test_a_trickling_job_does_not_hold_up_other_jobs(fault_stack, hostile, trickling_draws):
    api = fault_stack.api_url
    usual = []
    for _ in range(3):
        done, took = timed_job(api, normal_job(fault_stack), timeout=60)
        assert done["status"] == "succeeded", done
        usual.append(took)
    source = hostile("trickle", interval=0.2)
    trickling = submit(api, {"source": {"url": source.url, "draws": trickling_draws}})
    # The trickling job holds a connection per draw it has started (two or three batches).
    wait_until(lambda: source.active >= 30, 5.0, "trickling draws not open")
    done, took = timed_job(api, normal_job(fault_stack), timeout=60)
    still = requests.get(f"{api}{trickling['url']}", timeout=10).json()["status"]
    print(
        f"normal 30-draw job: usual {max(usual):.2f} s, beside {trickling_draws} trickling "
        f"draws {took:.2f} s (trickling job {still})"
    )
    assert done["status"] == "succeeded", done
    assert still == "fetching", "the trickling job was still running alongside"
    # Within its usual time; a job queued behind the trickling draws takes the batch
    # deadline (12 s) or fails.
    assert took < max(usual) + 1.5, (took, usual)


def test_cancelling_a_job_stops_its_fetches_within_a_second(fault_stack, hostile):
    api = fault_stack.api_url
    source = hostile("trickle", interval=0.2)
    job = submit(api, {"source": {"url": source.url, "draws": 30}})
    wait_until(lambda: source.active == 30, 5.0, "the job's 30 draws not all open")
    start = time.monotonic()
    response = requests.post(f"{api}{job['url']}/cancel", timeout=10)
    assert response.status_code == 202, response.text
    wait_until(lambda: source.active == 0, 1.0, "fetches still open after the cancel")
    took = time.monotonic() - start
    assert took < 1.0
    opened = source.connections
    print(f"cancel: every connection closed {took:.2f} s after the POST")
    time.sleep(1.0)
    assert source.connections == opened, "new fetches started after the cancel"
    assert requests.get(f"{api}{job['url']}", timeout=10).json()["status"] == "cancelled"


# --- 2. answers too big to hold ---------------------------------------------------------


class PeakWatch:
    """Watches the io worker's RSS while a job runs; shuts the source if it runs away."""

    def __init__(self, pid: int, source: HostileSource):
        self.pid = pid
        self.source = source
        self.before = status_bytes(pid, "VmRSS")
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, status_bytes(self.pid, "VmRSS"))
            if self.peak - self.before > RUNAWAY:
                self.source.stop()
                return

    def __enter__(self) -> PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        # VmHWM catches a peak between two samples.
        self.peak = max(self.peak, status_bytes(self.pid, "VmHWM"))
        self.after = status_bytes(self.pid, "VmRSS")


@pytest.mark.parametrize(
    ("mode", "options", "cause"),
    [
        ("endless", {}, "it goes on past that"),
        # Inflated at most one chunk per step: 30 draws never hold a burst of the cap each.
        ("gzip-bomb", {}, "gzip inflates past that"),
        ("oversized", {}, "it goes on past that"),
        ("oversized", {"declare_length": True}, "its Content-Length is 10000013"),
    ],
    ids=["endless", "gzip-bomb", "oversized", "oversized-declared"],
)
def test_an_answer_too_big_fails_its_job_in_seconds_and_memory_stays(
    fault_stack, hostile, mode, options, cause
):
    api = fault_stack.api_url
    io = fault_stack.services["worker-io-1"]
    # The worker's threads, pools and imports in place first: that is the baseline.
    for _ in range(2):
        assert timed_job(api, normal_job(fault_stack), timeout=60)[0]["status"] == "succeeded"
    source = hostile(mode, **options)
    with PeakWatch(io.pid, source) as memory:
        done, took = timed_job(api, {"source": {"url": source.url, "draws": 30}}, timeout=60)
        # The other batch ends within its grace (0.5 s). (source.active is no measure here:
        # the worker has closed its sockets, but a source blocked in a send sees it late.)
        time.sleep(1.0)
    grown, peak = (memory.after - memory.before) / MIB, (memory.peak - memory.before) / MIB
    print(
        f"{mode} {options}: failed after {took:.2f} s; io worker RSS {memory.before / MIB:.0f}"
        f" MiB before, {memory.after / MIB:.0f} MiB after (+{grown:.0f}), peak +{peak:.0f} MiB;"
        f" {source.bytes_sent / MIB:.1f} MiB sent"
    )
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "invalid_draws", done["error"]
    message = done["error"]["message"]
    assert f"longer than {ANSWER_CAP} bytes" in message and cause in message, message
    assert "EMCOINS_MAX_FLIPS" in message
    assert took < 5.0
    assert grown < 100, f"io worker grew by {grown:.0f} MiB"
    assert peak < 100, f"io worker peaked {peak:.0f} MiB above its baseline"


# --- 3. fetched draws obey the inline limits --------------------------------------------


def test_json_nested_too_deep_is_invalid_draws(fault_stack, hostile):
    source = hostile("nested", depth=100_000)
    done, took = timed_job(
        fault_stack.api_url, {"source": {"url": source.url, "draws": 30}}, timeout=30
    )
    print(f"nested: failed after {took:.2f} s")
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "invalid_draws", done["error"]
    assert 0 <= done["error"]["details"]["draw"] < 30
    assert "EMCOINS_MAX_JSON_DEPTH" in done["error"]["message"]
    assert took < 5.0
    assert fault_stack.services["worker-io-1"].running()


@pytest.mark.parametrize("stack_env", [{"EMCOINS_MAX_FLIPS": "40"}])
def test_a_fetched_draw_over_max_flips_is_invalid_draws(fault_stack, hostile, stack_env):
    api = fault_stack.api_url
    # Every draw of this source is the same: one coin is all that can be fitted.
    fits = hostile("normal", flips="HT" * 20)
    body = {"source": {"url": fits.url, "draws": 20}, "n_components": 1, "methods": ["em"]}
    done = wait_for(api, submit(api, body))
    assert done["status"] == "succeeded", done
    over = hostile("normal", flips="HT" * 20 + "H")
    done = wait_for(api, submit(api, {"source": {"url": over.url, "draws": 20}}))
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "invalid_draws", done["error"]
    assert "41 flips" in done["error"]["message"]
    assert "EMCOINS_MAX_FLIPS" in done["error"]["message"]
    # Inline, the same draw is refused at once, naming the same setting.
    inline = requests.post(f"{api}/jobs", json={"draws": ["HT" * 20 + "H"] * 3}, timeout=10)
    assert inline.status_code == 422 and "EMCOINS_MAX_FLIPS" in inline.text


@pytest.mark.parametrize(
    ("stack_env", "setting"),
    [
        ({"EMCOINS_MAX_DRAWS": "25"}, "EMCOINS_MAX_DRAWS"),
        ({"EMCOINS_MAX_ROWS": "25"}, "EMCOINS_MAX_ROWS"),
    ],
    ids=["draws", "rows"],
)
def test_a_source_job_is_held_to_the_inline_draw_and_row_limits(
    fault_stack, hostile, stack_env, setting
):
    api = fault_stack.api_url
    source = hostile("normal")
    # Inline: 30 draws (30 rows) are refused, naming the setting.
    inline = requests.post(f"{api}/jobs", json={"draws": ["HTTH"] * 30}, timeout=10)
    assert inline.status_code == 422 and setting in inline.text, inline.text
    # Fetched: 30 draws are refused too, before anything is fetched.
    fetched = requests.post(
        f"{api}/jobs", json={"source": {"url": source.url, "draws": 30}}, timeout=10
    )
    assert fetched.status_code == 422, fetched.text
    assert setting in fetched.json()["error"]["details"]["source.draws"]
    assert source.requests == 0
    ok = submit(api, {"source": {"url": source.url, "draws": 25}, "n_components": 1})
    assert wait_for(api, ok)["status"] == "succeeded"
