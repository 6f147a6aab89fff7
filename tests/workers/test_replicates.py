"""Bootstrap and components-test replicates through the tasks, in this process, against the
real Redis and broker lists: the result equals the estimators' own in-process drivers
however the work is chunked, and redelivered, lost or cancelled chunks change nothing."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from shared import keys
from shared.chunks import ChunkLayout
from shared.config import Settings
from shared.contract import BOOTSTRAP, COMPONENTS_TEST, Bootstrap, ComponentsTest, JobSpec
from shared.estimation.bootstrap import bootstrap
from shared.estimation.components_test import components_test
from shared.status import JobStatus
from shared.store import Saved
from shared.taskqueue import CPU_QUEUE, FIT, REPLICATES, REPLICATES_QUEUE
from workers import replicates, tasks

# Two coins, 0.35 and 0.75, 540 draws of 10 flips in 4 rows: a replicate takes milliseconds.
COUNTS = [[3, 10, 120], [4, 10, 160], [7, 10, 150], [8, 10, 110]]
ROWS = np.asarray(COUNTS)


def job_spec(**changes) -> JobSpec:
    fields = {"n_components": 2, "max_components": 3, "weights": "learn", "restarts": 4,
              "methods": ("em",), "seed": 5}
    return JobSpec(**{**fields, **changes})


@pytest.fixture
def chunked(monkeypatch):
    """Chunks of at most ``largest`` replicates, and a first chunk of one or two (timed for
    about a millisecond)."""

    def set_size(largest: int) -> None:
        settings = Settings(replicate_chunk_seconds=0.004, replicate_chunk_max=largest)
        monkeypatch.setattr(replicates, "get_settings", lambda: settings)

    return set_size


def pop_task(redis_client, queue: str) -> tuple[str, list] | None:
    """The oldest task waiting in a queue: its name and arguments."""
    raw = redis_client.rpop(queue)
    if raw is None:
        return None
    message = json.loads(raw)
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args


def drain(redis_client, *, limit: int = 10_000) -> int:
    """Run every task the job sends, fits before chunks as a cpu worker takes them; returns
    how many chunks ran."""
    ran = 0
    for _ in range(limit):
        task = pop_task(redis_client, CPU_QUEUE) or pop_task(redis_client, REPLICATES_QUEUE)
        if task is None:
            return ran
        name, args = task
        assert name in (FIT, REPLICATES)
        if name == FIT:
            tasks.fit.run(*args)
        else:
            tasks.replicates.run(*args)
            ran += 1
    raise AssertionError("the job never stopped sending tasks")


def reference_bootstrap(record, kind: str, b: int, level: float = 0.95) -> dict:
    em = record.result.em
    return bootstrap(kind, ROWS[:, 0], ROWS[:, 1], ROWS[:, 2], list(em.thetas), list(em.weights),
                     replicates=b, level=level, seed=record.spec.seed)


@pytest.mark.parametrize(("largest", "kind"), [(1000, "nonparametric"), (3, "nonparametric"),
                                               (7, "parametric")])
def test_the_bootstrap_equals_the_in_process_one_however_chunked(redis_client, chunked,
                                                                 largest, kind):
    chunked(largest)
    jobs = tasks.store()
    spec = job_spec(bootstrap=Bootstrap(replicates=30, kind=kind, level=0.9))
    jobs.create("job", spec=spec, draws_total=540, counts=COUNTS)
    tasks.fit.run("job", ["em"])
    assert jobs.get("job").status is JobStatus.FITTING  # the EM part waits for its bootstrap
    ran = drain(redis_client)
    record = jobs.get("job")
    assert record.status is JobStatus.SUCCEEDED, record.error
    layout = ChunkLayout.from_json(jobs.stage_setup("job", BOOTSTRAP, 0)["layout"])
    assert layout.size <= largest and ran == layout.chunks - 1 >= 1
    assert record.result.to_json()["em"]["bootstrap"] == reference_bootstrap(record, kind, 30, 0.9)
    assert record.to_json()["progress"]["replicates"] == {
        "analysis": "bootstrap", "stage": None, "done": 30, "total": 30}


def test_the_components_test_chooses_the_k_that_is_fitted(redis_client, chunked):
    chunked(4)
    jobs = tasks.store()
    spec = job_spec(n_components="auto", methods=("em", "gmm"),
                    test_components=ComponentsTest(max_components=3, replicates=19),
                    bootstrap=Bootstrap(replicates=10))
    jobs.create("job", spec=spec, draws_total=540, counts=COUNTS)
    tasks.fit.run("job", ["em", "gmm"])
    assert jobs.parts("job") == {}  # the fits wait for the test
    drain(redis_client)
    record = jobs.get("job")
    assert record.status is JobStatus.SUCCEEDED, record.error
    expected = components_test(ROWS[:, 0], ROWS[:, 1], ROWS[:, 2], max_components=3,
                               replicates=19, seed=5, restarts=4)
    result = record.result.to_json()
    assert result["components_test"] == expected
    # 0.35 against 0.75 from 540 draws: one coin is rejected, two are not.
    assert [t["k"] for t in expected["tests"]] == [1, 2] and expected["selected"] == 2
    assert record.result.n_components == 2 == len(result["em"]["thetas"])
    assert len(result["gmm"]["means"]) == 2 and set(result["bic"]) == {"1", "2", "3"}
    assert result["em"]["bootstrap"] == reference_bootstrap(record, "nonparametric", 10)


def test_a_test_with_given_k_only_reports(redis_client, chunked):
    chunked(1000)
    jobs = tasks.store()
    # B=19: the smallest p-value, 1/20, can reject at 0.05.
    spec = job_spec(n_components=3, test_components=ComponentsTest(max_components=3,
                                                                   replicates=19))
    jobs.create("job", spec=spec, draws_total=540, counts=COUNTS)
    tasks.fit.run("job", ["em"])
    drain(redis_client)
    result = jobs.get("job").result
    assert result.components_test.selected == 2 and result.n_components == 3
    assert len(result.em.thetas) == 3


def test_a_test_the_data_cannot_support_is_an_error_beside_the_fits(redis_client):
    jobs = tasks.store()
    # Draws of 4 flips identify at most 2 coins (Teicher: 2K - 1 flips).
    spec = job_spec(n_components="auto", test_components=ComponentsTest(max_components=3,
                                                                        replicates=9))
    jobs.create("job", spec=spec, draws_total=30,
                counts=[[1, 4, 10], [2, 4, 10], [3, 4, 10]])
    tasks.fit.run("job", ["em"])
    record = jobs.get("job")
    assert record.status is JobStatus.SUCCEEDED
    body = record.result.to_json()
    assert body["components_test"] is None and body["em"] is not None
    assert "max_components=3 is more than these draws can identify" in (
        body["errors"]["components_test"]["message"])
    assert redis_client.llen(REPLICATES_QUEUE) == 0


def test_a_chunk_delivered_twice_is_run_and_counted_once(redis_client, chunked):
    chunked(5)
    jobs = tasks.store()
    jobs.create("job", spec=job_spec(bootstrap=Bootstrap(replicates=20)), draws_total=540,
                counts=COUNTS)
    tasks.fit.run("job", ["em"])
    name, args = pop_task(redis_client, REPLICATES_QUEUE)
    tasks.replicates.run(*args)
    done = jobs.get("job").replicates.done
    before = redis_client.xlen(keys.job_events("job"))
    tasks.replicates.run(*args)  # redelivered
    assert jobs.get("job").replicates.done == done
    assert redis_client.xlen(keys.job_events("job")) == before
    drain(redis_client)
    record = jobs.get("job")
    assert record.status is JobStatus.SUCCEEDED
    assert record.replicates.done == 20 and record.result.em.bootstrap.replicates == 20


def test_chunks_of_a_cancelled_job_return_without_work(redis_client, chunked, monkeypatch):
    chunked(5)
    jobs = tasks.store()
    jobs.create("job", spec=job_spec(bootstrap=Bootstrap(replicates=20)), draws_total=540,
                counts=COUNTS)
    tasks.fit.run("job", ["em"])
    assert jobs.cancel("job")
    ran = []
    monkeypatch.setattr(replicates, "run", lambda *a, **k: ran.append(a) or [])
    assert drain(redis_client) >= 1
    assert ran == []
    assert jobs.saved_chunks("job", BOOTSTRAP, 0) == {0}
    assert jobs.get("job").status is JobStatus.CANCELLED


def test_chunks_lost_before_they_were_sent_are_sent_by_the_redelivered_fit(redis_client,
                                                                          chunked):
    chunked(4)
    jobs = tasks.store()
    jobs.create("job", spec=job_spec(bootstrap=Bootstrap(replicates=20)), draws_total=540,
                counts=COUNTS)
    tasks.fit.run("job", ["em"])
    # As if the worker died after starting the bootstrap, before its chunks reached Redis.
    layout = ChunkLayout.from_json(jobs.stage_setup("job", BOOTSTRAP, 0)["layout"])
    redis_client.delete(REPLICATES_QUEUE)
    tasks.fit.run("job", ["em"])  # redelivered: resumes, without a second EM fit
    assert redis_client.llen(REPLICATES_QUEUE) == layout.chunks - 1
    assert ChunkLayout.from_json(jobs.stage_setup("job", BOOTSTRAP, 0)["layout"]) == layout
    drain(redis_client)
    record = jobs.get("job")
    assert record.status is JobStatus.SUCCEEDED
    assert record.result.to_json()["em"]["bootstrap"] == reference_bootstrap(
        record, "nonparametric", 20)


def test_a_chunk_redelivered_after_the_last_save_takes_the_job_on(redis_client, chunked):
    chunked(4)
    jobs = tasks.store()
    spec = job_spec(n_components="auto", test_components=ComponentsTest(max_components=2,
                                                                        replicates=19))
    jobs.create("job", spec=spec, draws_total=540, counts=COUNTS)
    tasks.fit.run("job", ["em"])
    chunks = []
    while (task := pop_task(redis_client, REPLICATES_QUEUE)) is not None:
        chunks.append(task[1])
    for args in chunks[:-1]:
        tasks.replicates.run(*args)
    # The last chunk's save, as if its worker died right after it.
    job_id, analysis, stage, chunk = chunks[-1]
    setup = jobs.stage_setup(job_id, analysis, stage)
    layout = ChunkLayout.from_json(setup["layout"])
    record = jobs.get(job_id)
    done = replicates.run(record, replicates.rows_of(COUNTS), analysis, stage, setup,
                          layout.indices(chunk))
    assert jobs.save_chunk(job_id, analysis, stage, chunk, done, chunks=layout.chunks) is (
        Saved.COMPLETED)
    assert jobs.outcome(job_id, COMPONENTS_TEST) is None
    tasks.replicates.run(*chunks[-1])  # the redelivery
    drain(redis_client)
    record = jobs.get(job_id)
    assert record.status is JobStatus.SUCCEEDED
    assert record.result.components_test.selected == 2
    assert record.result.n_components == 2
