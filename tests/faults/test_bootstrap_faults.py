"""Cpu workers killed in the middle of a bootstrap: the job still finishes with all B
replicates, none counted twice, and its intervals are those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import redis
import requests

from shared import keys
from shared.chunks import ChunkLayout
from shared.draws import aggregate_counts
from shared.estimation.bootstrap import bootstrap
from tests.faults.conftest import children
from tests.integration.helpers import submit, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

REPLICATES = 1000
# Chunks of about half a second: a dozen or more, several running when the kill comes.
CHUNKS = {"EMCOINS_REPLICATE_CHUNK_SECONDS": "0.5"}


def counts(seed: int) -> list[list[int]]:
    """~1,900 distinct rows of 20 to 400 flips: a replicate is several milliseconds of
    work, and the bootstrap seconds, so that a kill lands while chunks run."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(20, 400, 2000)
    heads = rng.binomial(flips, rng.choice([0.3, 0.7], 2000))
    return aggregate_counts((int(h), int(n)) for h, n in zip(heads, flips, strict=True))


def running_bootstrap(stack, data: list[list[int]]) -> dict:
    """Submit the job and wait until its chunks are being run."""
    job = submit(stack.api_url, {"counts": data, "methods": ["em"], "seed": 9, "restarts": 2,
                                 "bootstrap": {"replicates": REPLICATES}})
    url = f"{stack.api_url}{job['url']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = requests.get(url, timeout=10).json()
        if body["progress"].get("replicates", {}).get("done", 0) > 0:
            return job
        time.sleep(0.02)
    raise AssertionError(f"the bootstrap never started: {body}")


def check_complete(stack, job: dict, done: dict, data: list[list[int]]) -> None:
    """All B replicates in, each chunk counted once, and the uninterrupted intervals."""
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"]["replicates"] == {
        "analysis": "bootstrap", "stage": None, "done": REPLICATES, "total": REPLICATES}
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    setup = json.loads(client.hget(keys.job_analyses(job["id"]), "setup:bootstrap:0"))
    layout = ChunkLayout.from_json(setup["layout"])
    assert layout.chunks >= 8
    counted = int(client.hget(keys.job_analyses(job["id"]), "chunks:bootstrap:0"))
    assert counted == layout.chunks == client.hlen(keys.job_replicates(job["id"]))
    em = done["result"]["em"]
    table = np.asarray(data)
    expected = bootstrap("nonparametric", table[:, 0], table[:, 1], table[:, 2], em["thetas"],
                         em["weights"], replicates=REPLICATES, level=0.95, seed=9)
    assert em["bootstrap"] == expected


@pytest.mark.parametrize("stack_env", [CHUNKS])
def test_pool_processes_killed_mid_chunk(fault_stack):
    data = counts(1)
    job = running_bootstrap(fault_stack, data)
    time.sleep(0.3)
    worker = fault_stack.services["worker-cpu-1"]
    pool = children(worker.pid)
    assert pool, "the prefork worker has pool processes"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    done = wait_for(fault_stack.api_url, job, timeout=180)
    assert worker.running(), "the main process survives and replaces its children"
    # The kill took chunks down with their processes (Celery logs each such task).
    assert "WorkerLostError" in worker.log_path.read_text()
    check_complete(fault_stack, job, done, data)


@pytest.mark.parametrize("stack_env", [CHUNKS])
def test_whole_cpu_worker_killed_mid_bootstrap(fault_stack):
    data = counts(2)
    job = running_bootstrap(fault_stack, data)
    time.sleep(0.3)
    fault_stack.services["worker-cpu-1"].signal(signal.SIGKILL)  # main process and children
    time.sleep(1)
    body = requests.get(f"{fault_stack.api_url}{job['url']}", timeout=10).json()
    assert body["status"] == "fitting"
    assert body["progress"]["replicates"]["done"] < REPLICATES
    fault_stack.start_worker("cpu", 2)
    back = time.monotonic()
    done = wait_for(fault_stack.api_url, job, timeout=180)
    took = time.monotonic() - back
    print(f"whole cpu worker killed mid-bootstrap: job finished {took:.1f} s after a new "
          "worker started")
    # The chunks the dead worker held come back after the visibility timeout (20 s) and
    # one restore sweep (2 s); the rest of the work is a few seconds.
    assert took < 30 + 15
    check_complete(fault_stack, job, done, data)
