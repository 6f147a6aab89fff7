"""Redis-held metrics: bucket placement, counting a finished job once, the scrape's text."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared import logs
from shared.contract import JobError
from shared.metrics import (
    FETCH_DURATION,
    JOB_DURATION,
    Metrics,
    RedisCollector,
    TaskObserver,
    bucket_field,
    cumulative_buckets,
)
from shared.store import JobStore
from tests.factories import SPEC


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


def test_task_observer_times_fetches_and_sets_the_log_context(redis_client):
    observer = TaskObserver(lambda: redis_client)
    with logs.job_context(None):
        observer.started("j4.fetch.0", "emcoins.fetch_batch")
        assert logs.current_job.get() == "j4"
        observer.finished("j4.fetch.0", "emcoins.fetch_batch")
        observer.started("j4.fit.em", "emcoins.fit")
        observer.finished("j4.fit.em", "emcoins.fit")
    figures = scrape(redis_client)
    assert figures[("emcoins_fetch_duration_seconds_count", ())] == 1


def test_jobs_finished_through_the_store_reach_the_scrape(redis_client):
    store = JobStore(redis_client, ttl_seconds=60)
    store.create("j1", spec=SPEC, draws_total=1, counts=[[1, 2, 1]])
    store.fail("j1", JobError(code="source_unavailable", message="gone"))
    figures = scrape(redis_client)
    finished = (("code", "source_unavailable"), ("status", "failed"))
    assert figures[("emcoins_jobs_finished_total", finished)] == 1
    cancelled = (("code", "none"), ("status", "cancelled"))
    assert figures[("emcoins_jobs_finished_total", cancelled)] == 0
    assert figures[("emcoins_job_duration_seconds_count", ())] == 1
