"""Bootstrap intervals and the components test on the real stack: the API, Celery workers
(the session stack's cpu worker of two processes, and a stack of one worker process with
chunks of at most 3 replicates), the event streams. The service's result equals the
estimators' in-process drivers for the same seed, whatever the chunks and the workers."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis
import requests
from celery import Celery

from cli.client import Client
from localstack.stack import Stack, StackConfig
from shared import keys
from shared.chunks import ChunkLayout
from shared.config import Settings
from shared.dispatch import Dispatcher
from shared.draws import aggregate_counts
from shared.estimation.bootstrap import bootstrap
from shared.estimation.components_test import components_test
from shared.taskqueue import CPU_QUEUE, FIT, REPLICATES, REPLICATES_QUEUE, celery_config
from tests.integration.helpers import submit, wait_for

pytestmark = pytest.mark.integration

# Two coins, 0.35 and 0.75: 540 draws of 10 flips in 4 rows; a replicate takes milliseconds.
COUNTS = [[3, 10, 120], [4, 10, 160], [7, 10, 150], [8, 10, 110]]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory) -> Iterator[Stack]:
    """One cpu worker process (concurrency 1), chunks of at most 3 replicates (timed for
    2.5 ms at the start of each stage, so the first chunk is small too)."""
    config = StackConfig(
        api_port=0, drawsource_port=0, api_workers=1, cpu_workers=1, cpu_concurrency=1,
        start_drawsource=False,
        env={"EMCOINS_REPLICATE_CHUNK_SECONDS": "0.01", "EMCOINS_REPLICATE_CHUNK_MAX": "3"},
        log_dir=tmp_path_factory.mktemp("one-worker-logs"),
    )
    with Stack(config) as running:
        yield running


@pytest.fixture(params=["stack", "one_worker"])
def any_stack(request) -> Stack:
    """The session stack (two worker processes, chunks sized to a second), then the stack
    of one worker process and chunks of 3."""
    return request.getfixturevalue(request.param)


def columns(counts: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = np.asarray(counts)
    return table[:, 0], table[:, 1], table[:, 2]


def chunk_layout(stack: Stack, job_id: str, analysis: str, stage: int) -> ChunkLayout:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    setup = json.loads(client.hget(keys.job_analyses(job_id), f"setup:{analysis}:{stage}"))
    return ChunkLayout.from_json(setup["layout"])


def test_a_bootstrap_job_gives_the_in_process_intervals(any_stack):
    body = {"counts": COUNTS, "seed": 21, "restarts": 4,
            "bootstrap": {"replicates": 60, "kind": "parametric", "level": 0.9}}
    job = submit(any_stack.api_url, body)
    done = wait_for(any_stack.api_url, job, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    em = done["result"]["em"]
    expected = bootstrap("parametric", *columns(COUNTS), em["thetas"], em["weights"],
                         replicates=60, level=0.9, seed=21)
    assert em["bootstrap"] == expected
    assert done["result"]["gmm"] is not None and "bootstrap" not in done["result"]["gmm"]
    assert done["spec"]["bootstrap"] == {"replicates": 60, "kind": "parametric", "level": 0.9}
    assert done["progress"]["replicates"] == {
        "analysis": "bootstrap", "stage": None, "done": 60, "total": 60}
    if any_stack.config.env.get("EMCOINS_REPLICATE_CHUNK_MAX") == "3":
        layout = chunk_layout(any_stack, job["id"], "bootstrap", 0)
        assert layout.size <= 3 and layout.chunks >= 15


def test_a_job_with_equal_weights_keeps_them_equal_in_every_refit(any_stack):
    body = {"counts": COUNTS, "seed": 8, "restarts": 4, "weights": "equal",
            "bootstrap": {"replicates": 20, "kind": "nonparametric"},
            "test_components": {"max_components": 3, "replicates": 19}}
    job = submit(any_stack.api_url, body)
    done = wait_for(any_stack.api_url, job, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    em = done["result"]["em"]
    assert em["bootstrap"]["weights"] == [[0.5, 0.5], [0.5, 0.5]]
    assert em["bootstrap"] == bootstrap("nonparametric", *columns(COUNTS), em["thetas"],
                                        em["weights"], replicates=20, level=0.95, seed=8,
                                        mixing="equal")
    assert done["result"]["components_test"] == components_test(
        *columns(COUNTS), max_components=3, replicates=19, seed=8, restarts=4, mixing="equal")


def test_a_components_test_job_selects_the_k_it_fits(any_stack):
    body = {"counts": COUNTS, "seed": 4, "restarts": 4, "n_components": "auto",
            "max_components": 3, "test_components": {"max_components": 3, "replicates": 19}}
    job = submit(any_stack.api_url, body)
    done = wait_for(any_stack.api_url, job, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    expected = components_test(*columns(COUNTS), max_components=3, replicates=19, seed=4,
                               restarts=4)
    assert result["components_test"] == expected
    assert expected["selected"] == 2 and [t["k"] for t in expected["tests"]] == [1, 2]
    assert result["n_components"] == 2 == len(result["em"]["thetas"])
    assert set(result["bic"]) == {"1", "2", "3"} and set(result["icl"]) == {"1", "2", "3"}


def test_progress_is_in_the_job_and_in_its_event_stream(stack):
    api = Client(stack.api_url, timeout=10, events_url=stack.events_url)
    job_id = api.submit({
        "counts": COUNTS, "seed": 8, "restarts": 4, "n_components": "auto",
        "test_components": {"max_components": 2, "replicates": 19},
        "bootstrap": {"replicates": 200},
    })["id"]
    events = list(api.follow(job_id, timeout=120))
    assert events[-1].name == "done" and events[-1].data["status"] == "succeeded"
    progress = [e.data["replicates"] for e in events
                if e.name == "progress" and "replicates" in e.data]
    stages = [(p["analysis"], p["stage"]) for p in progress]
    # The test's one stage (1 coin against 2), then the bootstrap; each from 0 to B.
    assert sorted(set(stages), key=stages.index) == [("components_test", 1), ("bootstrap", None)]
    for stage in set(stages):
        done = [p["done"] for p in progress if (p["analysis"], p["stage"]) == stage]
        total = {p["total"] for p in progress if (p["analysis"], p["stage"]) == stage}
        assert done[0] == 0 and done[-1] == total.pop() and done == sorted(done)
    assert events[-1].data["progress"]["replicates"] == progress[-1]
    assert progress[-1] == {"analysis": "bootstrap", "stage": None, "done": 200, "total": 200}


def heavy_counts(draws: int = 2000, seed: int = 3) -> list[list[int]]:
    """~1,900 distinct rows of 20 to 400 flips: a replicate is a few milliseconds of work."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(20, 400, draws)
    heads = rng.binomial(flips, rng.choice([0.3, 0.7], draws))
    return aggregate_counts((int(h), int(n)) for h, n in zip(heads, flips, strict=True))


def chunk_runtimes(stack: Stack, job_id: str) -> list[tuple[str, float]]:
    """(time, seconds) of each replicate chunk of a job the worker ran, from its log."""
    runs = []
    for line in (stack.log_dir / "worker-cpu-1.log").read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        data = record.get("data") or {}
        if data.get("name") == "emcoins.replicates" and "runtime" in data and (
                record.get("job_id") == job_id):
            runs.append((record["time"], float(data["runtime"])))
    return runs


def test_cancelling_stops_the_chunks_that_wait(one_worker):
    broker = redis.Redis.from_url(one_worker.redis.url, decode_responses=True)
    counts = heavy_counts()
    job = submit(one_worker.api_url, {"counts": counts, "methods": ["em"], "seed": 2,
                                      "restarts": 2, "bootstrap": {"replicates": 3000}})
    url = f"{one_worker.api_url}{job['url']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = requests.get(url, timeout=10).json()
        if running["progress"].get("replicates", {}).get("done", 0) >= 30:
            break
        time.sleep(0.05)
    progress = running["progress"]["replicates"]
    assert running["status"] == "fitting"
    assert progress["analysis"] == "bootstrap" and progress["total"] == 3000
    # Chunks of at most 3: a thousand or more wait behind the one running.
    assert broker.llen(REPLICATES_QUEUE) > 500
    assert requests.post(f"{url}/cancel", timeout=10).status_code == 202
    cancelled_at = requests.get(url, timeout=10).json()["finished_at"]
    stopped = time.monotonic()
    while broker.llen(REPLICATES_QUEUE) and time.monotonic() - stopped < 60:
        time.sleep(0.1)
    emptied = time.monotonic() - stopped
    assert broker.llen(REPLICATES_QUEUE) == 0, "the waiting chunks are still there"
    time.sleep(1)  # the last chunk's log line
    final = requests.get(url, timeout=10).json()
    assert final["status"] == "cancelled" and final["result"] is None
    assert final["progress"]["replicates"]["done"] < 3000
    # Chunks that ran before the cancel did their refits; those taken after it only read
    # the job's status (ISO times of one clock compare as strings).
    runs = chunk_runtimes(one_worker, job["id"])
    before = [seconds for at, seconds in runs if at < cancelled_at]
    after = [seconds for at, seconds in runs if at > cancelled_at]
    assert len(before) >= 10 and len(after) > 500
    assert statistics.median(after) * 5 < statistics.median(before), (
        statistics.median(after), statistics.median(before))
    print(f"cancel: {progress['done']} replicates done; {len(after)} waiting chunks returned "
          f"in {statistics.median(after) * 1000:.2f} ms each (median; a chunk's work before: "
          f"{statistics.median(before) * 1000:.1f} ms), all gone {emptied:.1f} s later")


def test_a_cpu_worker_takes_waiting_fits_before_waiting_chunks(tmp_path):
    config = StackConfig(api_port=0, drawsource_port=0, api_workers=1, cpu_concurrency=1,
                         start_drawsource=False, start_events=False, start_workers=False,
                         log_dir=tmp_path)
    with Stack(config) as held:
        broker = redis.Redis.from_url(held.redis.url)
        celery = Celery("test-sender", set_as_current=False)
        celery.conf.update(celery_config(Settings(redis_url=held.redis.url)))
        # Chunks of a job that is gone (each returns at once), then two small jobs' fits.
        Dispatcher(celery, broker, batch_size=10).send_replicates("gone", "bootstrap", 0,
                                                                  range(40))
        jobs = [submit(held.api_url, {"counts": COUNTS, "seed": s}) for s in (1, 2)]
        assert broker.llen(REPLICATES_QUEUE) == 40 and broker.llen(CPU_QUEUE) >= 2
        held.start_worker("cpu")
        for job in jobs:
            assert wait_for(held.api_url, job, timeout=60)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while broker.llen(REPLICATES_QUEUE) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        order = []
        for line in (tmp_path / "worker-cpu-1.log").read_text().splitlines():
            name = (json.loads(line).get("data") or {}).get("name") if line.startswith(
                "{") else None
            if name and "succeeded" in line:
                order.append(name)
    # Polled in the order the worker names its queues (kombu's "priority" order, not round
    # robin): every fit before the first chunk, though the chunks were queued first.
    fits = order.count(FIT)
    assert fits >= 2 and order.count(REPLICATES) == 40
    assert order[:fits] == [FIT] * fits, order


@pytest.mark.parametrize(("extra", "field", "words"), [
    ({"bootstrap": {"replicates": 10_001}}, "bootstrap.replicates", "EMCOINS_MAX_REPLICATES"),
    ({"bootstrap": {"replicates": 0}}, "bootstrap.replicates", "greater than or equal to 1"),
    ({"bootstrap": {"level": 1}}, "bootstrap.level", "less than 1"),
    ({"bootstrap": {"level": 0}}, "bootstrap.level", "greater than 0"),
    ({"bootstrap": {"level": "0.9"}}, "bootstrap.level", "Not a valid number"),
    ({"bootstrap": {"kind": "jackknife"}}, "bootstrap.kind", "nonparametric, parametric"),
    ({"bootstrap": {"B": 10}}, "bootstrap.B", "Unknown field"),
    ({"bootstrap": {}, "methods": ["gmm"]}, "bootstrap", 'needs "em" in methods'),
    ({"test_components": {}, "methods": ["gmm"]}, "test_components",
     'needs "em" in methods'),
    ({"test_components": {"max_components": 1}}, "test_components.max_components",
     "greater than or equal to 2"),
    ({"test_components": {"max_components": 11}}, "test_components.max_components",
     "EMCOINS_MAX_COMPONENTS"),
    ({"test_components": {"max_components": 6}}, "test_components.max_components",
     "at most 10 flips"),
    ({"test_components": {"max_components": 5}}, "test_components.max_components",
     "at least 5 distinct (heads, flips) pairs"),
    ({"test_components": {"replicates": 20_000}}, "test_components.replicates",
     "EMCOINS_MAX_REPLICATES"),
])
def test_bad_analysis_fields_get_a_422_naming_them(stack, extra, field, words):
    answer = requests.post(f"{stack.api_url}/jobs", json={"counts": COUNTS, **extra}, timeout=10)
    assert answer.status_code == 422, answer.text
    details = answer.json()["error"]["details"]
    assert set(details) == {field} and words in details[field]
