"""Redis-held metrics: bucket placement, counting a finished job once, the scrape's text."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared import keys, logs
from shared.metrics import (
    FETCH_DURATION,
    JOB_DURATION,
    Metrics,
    RedisCollector,
    TaskObserver,
    bucket_field,
    cumulative_buckets,
    job_seconds,
)
from shared.store import JobStore


def scrape(client) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` from the collector's text output."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_value_lands_in_the_smallest_bucket_that_holds_it():
    assert bucket_field(FETCH_DURATION, 0.01) == "le:0.01"
    assert bucket_field(FETCH_DURATION, 0.011) == "le:0.025"
    assert bucket_field(FETCH_DURATION, 1e6) == "le:+Inf"


def test_cumulative_buckets_add_up():
    raw = {"le:0.25": "2", "le:1": "3", "le:+Inf": "1"}
    pairs = dict(cumulative_buckets(JOB_DURATION, raw))
    assert pairs["0.25"] == 2 and pairs["0.5"] == 2 and pairs["1"] == 5
    assert pairs["1800"] == 5 and pairs["+Inf"] == 6


def test_histogram_and_counters_in_the_scrape(redis_client):
    metrics = Metrics(redis_client)
    for value in (0.02, 0.3, 0.3, 7.0):
        metrics.observe(FETCH_DURATION, value)
    for _ in range(3):
        metrics.job_submitted()
    redis_client.rpush("io", "a", "b")
    redis_client.rpush("cpu", "c")
    figures = scrape(redis_client)
    name = "emcoins_fetch_duration_seconds"
    assert figures[(f"{name}_bucket", (("le", "0.025"),))] == 1
    assert figures[(f"{name}_bucket", (("le", "0.5"),))] == 3
    assert figures[(f"{name}_bucket", (("le", "+Inf"),))] == 4
    assert figures[(f"{name}_count", ())] == 4
    assert figures[(f"{name}_sum", ())] == pytest.approx(7.62)
    assert figures[("emcoins_jobs_submitted_total", ())] == 3
    assert figures[("emcoins_queue_depth", (("queue", "io"),))] == 2
    assert figures[("emcoins_queue_depth", (("queue", "cpu"),))] == 1


def _finished_job(redis_client, job_id: str, *, fail: bool) -> JobStore:
    store = JobStore(redis_client, ttl_seconds=60)
    store.create(job_id, spec={}, draws_total=1, counts=[[1, 2, 1]])
    if fail:
        store.fail(job_id, code="source_unavailable", message="gone")
    else:
        store.start_fitting(job_id, [[1, 2, 1]])
        store.succeed(job_id, {"n_components": 1})
    return store


def test_a_finished_job_is_counted_once_with_its_code_and_duration(redis_client):
    store = _finished_job(redis_client, "j1", fail=True)
    metrics = Metrics(redis_client)
    assert metrics.job_finished_by_id(store, "j1")
    assert not metrics.job_finished_by_id(store, "j1")
    assert not metrics.job_finished_by_id(store, "missing")
    figures = scrape(redis_client)
    finished = (("code", "source_unavailable"), ("status", "failed"))
    assert figures[("emcoins_jobs_finished_total", finished)] == 1
    cancelled = (("code", "none"), ("status", "cancelled"))
    assert figures[("emcoins_jobs_finished_total", cancelled)] == 0
    assert figures[("emcoins_job_duration_seconds_count", ())] == 1
    assert redis_client.ttl(keys.job_counted("j1")) > 0


def test_an_unfinished_job_is_not_counted(redis_client):
    store = JobStore(redis_client, ttl_seconds=60)
    store.create("j2", spec={}, draws_total=5)
    assert not Metrics(redis_client).job_finished_by_id(store, "j2")
    assert not redis_client.exists(keys.metric_counters())


def test_job_seconds_from_the_record(redis_client):
    store = _finished_job(redis_client, "j3", fail=False)
    record = store.get("j3")
    redis_client.hset(keys.job("j3"), mapping={
        "created_at": "2026-01-01T10:00:00.000Z", "finished_at": "2026-01-01T10:01:02.500Z"
    })
    assert job_seconds(store.get("j3")) == 62.5
    assert record.status.value == "succeeded"


def test_task_observer_times_fetches_and_counts_the_job(redis_client):
    store = _finished_job(redis_client, "j4", fail=False)
    observer = TaskObserver(lambda: store, ttl_seconds=60)
    assert observer.job_of("j4.fetch.0") == "j4" and observer.job_of("celery-internal") is None
    with logs.job_context(None):
        observer.started("j4.fetch.0", "emcoins.fetch_batch")
        assert logs.current_job.get() == "j4"
        observer.finished("j4.fetch.0", "emcoins.fetch_batch")
        observer.started("j4.finish", "emcoins.finish")
        observer.finished("j4.finish", "emcoins.finish")
    figures = scrape(redis_client)
    assert figures[("emcoins_fetch_duration_seconds_count", ())] == 1
    succeeded = (("code", "none"), ("status", "succeeded"))
    assert figures[("emcoins_jobs_finished_total", succeeded)] == 1
