"""Jobs whose tasks were lost (as a Redis failover can lose a task the old master handed
out): the workers' sweep finds them carried by no task and sends their next tasks again.

The loss is made by hand: a job stored as the API stores it but with no task sent, or a
bootstrap whose waiting chunks are deleted from the queue while it runs.
"""

from __future__ import annotations

import time

import pytest
import redis
import requests

from shared import keys, metrics, taskqueue
from shared.config import get_settings
from shared.store import JobStore
from shared.taskqueue import batches
from tests.factories import spec
from tests.faults.test_bootstrap_faults import CHUNKS, check_complete, counts, running_bootstrap
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# Sweeps every 1 to 1.5 s: a lost job is found by the second, within about 4 s.
FAST_SWEEPS = {"EMCOINS_RECOVERY_INTERVAL": "1"}


def resumed(stack) -> int:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    return int(client.hget(keys.metric_counters(), metrics.RESUMED) or 0)


@pytest.mark.parametrize("stack_env", [FAST_SWEEPS])
def test_jobs_stored_without_their_tasks_are_carried_on(fault_stack):
    client = redis.Redis.from_url(fault_stack.redis.url)
    jobs = JobStore(client, ttl_seconds=get_settings().job_ttl_seconds)
    url = f"{fault_stack.drawsource_url}/draw"
    jobs.create("inline-lost", spec=spec(seed=3), draws_total=40,
                counts=[[3, 10, 10], [8, 10, 10], [2, 10, 10], [7, 10, 10]])
    jobs.create("source-lost", spec=spec(source=(url, 50), seed=3), draws_total=50,
                batches_total=len(batches(50, 20)))
    started = time.monotonic()
    for job_id in ("inline-lost", "source-lost"):
        done = wait_for(fault_stack.api_url, {"id": job_id, "url": f"/jobs/{job_id}"},
                        timeout=60)
        assert done["status"] == "succeeded", done["error"]
        assert set(done["result"]) >= {"em", "gmm"}
    took = time.monotonic() - started
    print(f"\ntwo jobs stored without tasks: both succeeded {took:.1f} s later")
    assert resumed(fault_stack) == 2
    log = fault_stack.services["worker-cpu-1"].log_path.read_text()
    log += fault_stack.services["worker-io-1"].log_path.read_text()
    assert "inline-lost was carried by no task" in log
    assert "source-lost was carried by no task" in log


@pytest.mark.parametrize("stack_env", [{**CHUNKS, **FAST_SWEEPS}])
def test_a_bootstrap_whose_waiting_chunks_were_lost_finishes_whole(fault_stack):
    data = counts(3)
    job = running_bootstrap(fault_stack, data)
    client = redis.Redis.from_url(fault_stack.redis.url)
    lost = client.delete(taskqueue.REPLICATES_QUEUE)
    assert lost == 1, "chunks were waiting when the queue was emptied"
    body = requests.get(f"{fault_stack.api_url}{job['url']}", timeout=10).json()
    assert body["progress"]["replicates"]["done"] < body["progress"]["replicates"]["total"]
    done = wait_for(fault_stack.api_url, job, timeout=120)
    check_complete(fault_stack, job, done, data)
    assert resumed(fault_stack) >= 1
