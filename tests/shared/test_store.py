"""The job store against a real Redis."""

from __future__ import annotations

import redis

from shared import keys
from shared.status import JobStatus
from shared.store import JobStore, Saved


def make_store(client: redis.Redis, ttl: int = 60) -> JobStore:
    return JobStore(client, ttl_seconds=ttl)


def test_create_and_read_back(redis_client):
    store = make_store(redis_client)
    store.create("j1", spec={"seed": 1}, draws_total=3, counts=[[1, 2, 3]])
    record = store.get("j1")
    assert record.status is JobStatus.QUEUED
    assert record.spec == {"seed": 1}
    assert (record.draws_total, record.draws_fetched) == (3, 3)
    assert record.counts == [[1, 2, 3]]
    assert record.result is None and record.error is None
    assert 0 < redis_client.ttl(keys.job("j1")) <= 60
    assert record.created_at.endswith("Z")


def test_unknown_job_raises(redis_client):
    store = make_store(redis_client)
    try:
        store.get("nope")
    except LookupError:
        pass
    else:
        raise AssertionError("expected JobNotFound")
    assert store.status("nope") is None


def test_final_status_is_never_overwritten(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={}, draws_total=5)
    assert store.cancel("j")
    assert not store.start_fetching("j")
    assert not store.start_fitting("j", [[1, 2, 1]])
    assert not store.succeed("j", {"n_components": 2})
    assert not store.fail("j", code="x", message="y")
    assert store.get("j").status is JobStatus.CANCELLED
    assert store.get("j").result is None


def test_lifecycle_stamps_times_and_result(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={}, draws_total=2)
    assert store.unfinished_count() == 1
    assert store.start_fetching("j")
    assert not store.start_fetching("j")  # only from queued
    started = store.get("j").started_at
    assert store.start_fitting("j", [[1, 2, 2]])
    assert store.get("j").started_at == started
    assert store.succeed("j", {"n_components": 1})
    record = store.get("j")
    assert record.status is JobStatus.SUCCEEDED
    assert record.result == {"n_components": 1}
    assert record.finished_at >= record.started_at >= record.created_at
    assert store.unfinished_count() == 0
    assert not store.cancel("j")


def test_record_batch_is_idempotent_and_says_when_it_completes(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={}, draws_total=4, batches_total=2)
    assert store.record_batch("j", 0, [(1, 2), (2, 2)]) is Saved.WRITTEN
    assert store.record_batch("j", 0, [(0, 2), (0, 2)]) is Saved.ALREADY
    assert store.record_batch("j", 1, [(0, 2), (1, 2)]) is Saved.COMPLETED
    assert store.record_batch("j", 1, [(0, 2), (1, 2)]) is Saved.ALREADY
    assert store.get("j").draws_fetched == 4
    assert store.batches("j") == {0: [[1, 2], [2, 2]], 1: [[0, 2], [1, 2]]}
    assert 0 < redis_client.pttl(keys.job_draws("j")) <= 60_000


def test_parts_are_write_once_and_complete_with_the_last_method(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={"methods": ["em", "gmm"]}, draws_total=1, counts=[[1, 1, 1]])
    assert store.save_part("j", "gmm", {"x": 1}) is Saved.WRITTEN
    assert store.save_part("j", "gmm", {"x": 2}) is Saved.ALREADY
    assert store.save_part("j", "em", {"y": 1}) is Saved.COMPLETED
    assert store.parts("j") == {"gmm": {"x": 1}, "em": {"y": 1}}
    assert 0 < redis_client.pttl(keys.job_parts("j")) <= 60_000


def test_writes_for_a_missing_job_write_nothing(redis_client):
    store = make_store(redis_client)
    assert store.record_batch("ghost", 0, [(1, 2)]) is Saved.NO_JOB
    assert store.save_part("ghost", "em", {}) is Saved.NO_JOB
    assert redis_client.keys("*") == []


def test_fail_records_error(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={}, draws_total=1)
    assert store.fail("j", code="source_unavailable", message="down", details={"url": "u"})
    error = store.get("j").error
    assert error == {"code": "source_unavailable", "message": "down", "details": {"url": "u"}}


def test_delete_forgets_everything(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={}, draws_total=1)
    store.record_batch("j", 0, [(1, 1)])
    store.delete("j")
    assert redis_client.keys("*") == []


def test_batch_lookups_without_reading_the_batches(redis_client):
    store = make_store(redis_client)
    store.create("j", spec={}, draws_total=4, batches_total=2)
    assert not store.has_batch("j", 0) and store.batch_count("j") == 0
    store.record_batch("j", 1, [(1, 2), (2, 2)])
    assert store.has_batch("j", 1) and not store.has_batch("j", 0)
    assert store.batch_count("j") == 1


def test_backlog_counts_unfinished_jobs(redis_client):
    store = make_store(redis_client)
    store.create("a", spec={}, draws_total=1)
    store.create("b", spec={}, draws_total=1)
    assert store.backlog() == 2
    store.cancel("a")
    assert store.backlog() == 1
