"""Workers killed or stopped mid-task: the job still succeeds, and its result is written once."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
import requests

from shared import keys
from shared.contract import JobSpec
from shared.draws import aggregate_counts
from shared.fitting import fit_methods
from tests.faults.conftest import children, heavy_counts
from tests.integration.helpers import submit, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# A fit of a few seconds (2.7-4.5 s here, alone on the machine) so that a kill lands while
# it runs; the estimator got fast enough that 12 restarts (0.7 s) no longer did.
HEAVY = {"methods": ["em"], "n_components": 3, "restarts": 70, "seed": 11}


def wait_status(api: str, job: dict, statuses: set[str], timeout: float = 60) -> dict:
    """Poll until the job reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{api}{job['url']}", timeout=10).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job never reached {statuses}: {body}")


def expected_thetas(counts: list[list[int]]) -> list[float]:
    """What a fit that nobody interrupted gives, computed in this process."""
    spec = JobSpec(n_components=3, max_components=4, weights="learn",
                   restarts=HEAVY["restarts"], methods=("em",), seed=HEAVY["seed"])
    [part] = fit_methods(["em"], aggregate_counts(counts), spec, max_gmm_draws=10**6)
    return list(part.estimate.thetas)


def test_pool_child_killed_mid_fit(fault_stack):
    counts = heavy_counts()
    job = submit(fault_stack.api_url, {"counts": counts, **HEAVY})
    wait_status(fault_stack.api_url, job, {"fitting"})
    time.sleep(0.5)
    worker = fault_stack.services["worker-cpu-1"]
    pool = children(worker.pid)
    assert pool, "the prefork worker has pool processes"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    done = wait_for(fault_stack.api_url, job, timeout=120)
    assert done["status"] == "succeeded", done
    assert worker.running(), "the main process survives and replaces its children"
    assert done["result"]["em"]["thetas"] == pytest.approx(expected_thetas(counts), abs=1e-9)
    first_finish = done["finished_at"]
    time.sleep(1)
    again = requests.get(f"{fault_stack.api_url}{job['url']}", timeout=10).json()
    assert again["finished_at"] == first_finish and again["result"] == done["result"]


def test_whole_cpu_worker_killed_mid_fit(fault_stack):
    counts = heavy_counts(seed=1)
    job = submit(fault_stack.api_url, {"counts": counts, **HEAVY})
    wait_status(fault_stack.api_url, job, {"fitting"})
    time.sleep(0.5)
    fault_stack.services["worker-cpu-1"].signal(signal.SIGKILL)  # main process and children
    time.sleep(1)
    assert requests.get(f"{fault_stack.api_url}{job['url']}", timeout=10).json()["status"] == (
        "fitting"
    )
    fault_stack.start_worker("cpu", 2)
    back = time.monotonic()
    done = wait_for(fault_stack.api_url, job, timeout=120)
    took = time.monotonic() - back
    print(f"whole cpu worker killed: job finished {took:.1f} s after a new worker started")
    assert done["status"] == "succeeded", done
    # The broker gives back a dead worker's tasks after the visibility timeout (20 s)
    # plus one restore sweep (2 s), and the refit takes a few seconds.
    assert took < 30 + 10, f"finished {took:.1f} s after a worker was back"
    assert done["result"]["em"]["thetas"] == pytest.approx(expected_thetas(counts), abs=1e-9)


def test_io_worker_killed_mid_fetch(fault_stack, drawsource):
    url = drawsource(latency_ms=400, seed=3)
    job = submit(fault_stack.api_url, {"source": {"url": url, "draws": 100}, "seed": 5})
    # Batches of 20 draws with 32 concurrent requests: all five batches are in flight.
    wait_status(fault_stack.api_url, job, {"fetching"})
    time.sleep(0.2)
    fault_stack.services["worker-io-1"].signal(signal.SIGKILL)
    fault_stack.start_worker("io", 2)
    back = time.monotonic()
    done = wait_for(fault_stack.api_url, job, timeout=120)
    took = time.monotonic() - back
    print(f"io worker killed: job finished {took:.1f} s after a new worker started")
    assert done["status"] == "succeeded", done
    assert took < 30 + 10
    # Each batch counted once, whatever was redelivered.
    assert done["progress"] == {"draws_fetched": 100, "draws_total": 100}


def test_sigterm_lets_the_running_fit_finish(fault_stack):
    counts = heavy_counts(seed=2)
    job = submit(fault_stack.api_url, {"counts": counts, **HEAVY})
    wait_status(fault_stack.api_url, job, {"fitting"})
    time.sleep(0.5)
    worker = fault_stack.services["worker-cpu-1"]
    worker.signal(signal.SIGTERM, group=False)  # warm shutdown: finish, then exit
    worker.process.wait(timeout=120)
    assert worker.process.returncode == 0
    # The stopping worker finished its fit: the part is stored, not left to redelivery.
    client = redis.Redis.from_url(fault_stack.redis.url, decode_responses=True)
    assert client.hexists(keys.job_parts(job["id"]), "em")
    # The next step waits in the queue for any worker; none is lost.
    fault_stack.start_worker("cpu", 2)
    back = time.monotonic()
    done = wait_for(fault_stack.api_url, job, timeout=60)
    assert done["status"] == "succeeded", done
    assert time.monotonic() - back < 15, "picked up from the queue, not after a timeout"
