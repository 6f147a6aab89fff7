"""The job store against a real Redis."""

from __future__ import annotations

import redis

from shared import keys
from shared.contract import JobError
from shared.status import JobStatus
from shared.store import JobStore, QueueFull, Saved
from tests.factories import SPEC, part, result, spec


def make_store(client: redis.Redis, ttl: int = 60) -> JobStore:
    return JobStore(client, ttl_seconds=ttl)


def test_create_and_read_back(redis_client):
    store = make_store(redis_client)
    store.create("j1", spec=spec(seed=7), draws_total=3, counts=[[1, 2, 3]])
    record = store.get("j1")
    assert record.status is JobStatus.QUEUED
    assert record.spec == spec(seed=7)
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
    store.create("j", spec=SPEC, draws_total=5)
    assert store.cancel("j")
    assert not store.start_fetching("j")
    assert not store.start_fitting("j", [[1, 2, 1]])
    assert not store.succeed("j", result(2))
    assert not store.fail("j", JobError(code="x", message="y"))
    assert store.get("j").status is JobStatus.CANCELLED
    assert store.get("j").result is None


def test_lifecycle_stamps_times_and_result(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=SPEC, draws_total=2)
    assert store.backlog() == 1
    assert store.start_fetching("j")
    assert not store.start_fetching("j")  # only from queued
    started = store.get("j").started_at
    assert store.start_fitting("j", [[1, 2, 2]])
    assert store.get("j").started_at == started
    assert store.succeed("j", result(1))
    record = store.get("j")
    assert record.status is JobStatus.SUCCEEDED
    assert record.result == result(1)
    assert record.finished_at >= record.started_at >= record.created_at
    assert store.backlog() == 0
    assert not store.cancel("j")


def test_record_batch_is_idempotent_and_says_when_it_completes(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=SPEC, draws_total=4, batches_total=2)
    assert store.record_batch("j", 0, [(1, 2), (2, 2)]) is Saved.WRITTEN
    assert store.record_batch("j", 0, [(0, 2), (0, 2)]) is Saved.ALREADY
    assert store.record_batch("j", 1, [(0, 2), (1, 2)]) is Saved.COMPLETED
    assert store.record_batch("j", 1, [(0, 2), (1, 2)]) is Saved.ALREADY
    assert store.get("j").draws_fetched == 4
    assert store.batches("j") == {0: [[1, 2], [2, 2]], 1: [[0, 2], [1, 2]]}
    assert 0 < redis_client.pttl(keys.job_draws("j")) <= 60_000


def test_parts_are_write_once_and_complete_with_the_last_method(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=spec(methods=["em", "gmm"]), draws_total=1, counts=[[1, 1, 1]])
    assert store.save_part("j", part("gmm", means=(0.1, 0.2))) is Saved.WRITTEN
    assert store.save_part("j", part("gmm", means=(0.3, 0.4))) is Saved.ALREADY
    assert store.save_part("j", part("em")) is Saved.COMPLETED
    assert store.parts("j") == {"gmm": part("gmm", means=(0.1, 0.2)), "em": part("em")}
    assert 0 < redis_client.pttl(keys.job_parts("j")) <= 60_000


def test_writes_for_a_missing_job_write_nothing(redis_client):
    store = make_store(redis_client)
    assert store.record_batch("ghost", 0, [(1, 2)]) is Saved.NO_JOB
    assert store.save_part("ghost", part("em")) is Saved.NO_JOB
    assert redis_client.keys("*") == []


def test_fail_records_error(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=SPEC, draws_total=1)
    error = JobError(code="source_unavailable", message="down", details={"url": "u"})
    assert store.fail("j", error)
    assert store.get("j").error == error


def test_delete_forgets_everything(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=SPEC, draws_total=1)
    store.record_batch("j", 0, [(1, 1)])
    store.delete("j")
    assert redis_client.keys("*") == []


def test_batch_lookups_without_reading_the_batches(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=SPEC, draws_total=4, batches_total=2)
    assert not store.has_batch("j", 0) and store.batch_count("j") == 0
    store.record_batch("j", 1, [(1, 2), (2, 2)])
    assert store.has_batch("j", 1) and not store.has_batch("j", 0)
    assert store.batch_count("j") == 1


def test_backlog_counts_unfinished_jobs(redis_client):
    store = make_store(redis_client)
    store.create("a", spec=SPEC, draws_total=1)
    store.create("b", spec=SPEC, draws_total=1)
    assert store.backlog() == 2
    store.cancel("a")
    assert store.backlog() == 1


def test_every_key_of_a_job_expires_at_the_one_instant_stored_with_it(redis_client):
    store = make_store(redis_client, ttl=120)
    before_ms = int(redis_client.time()[0]) * 1000
    store.create("j", spec=spec(methods=["gmm"]), draws_total=2, batches_total=1)
    expires = int(redis_client.hget(keys.job("j"), "expires_at"))
    assert before_ms + 120_000 <= expires <= before_ms + 122_000
    store.record_batch("j", 0, [(1, 2), (2, 2)])
    store.start_fitting("j", [[1, 2, 1], [2, 2, 1]])
    store.save_part("j", part("gmm"))
    store.keep_plot(store.get("j"), "png", b"png bytes")
    # PEXPIRETIME is Redis 7; the bundled 6.2 has none. PTTL values read in one
    # transaction are read at one instant, so equal expiries give equal PTTLs.
    with redis_client.pipeline(transaction=True) as pipe:
        for key in (keys.job("j"), keys.job_draws("j"), keys.job_parts("j"),
                    keys.job_plot("j", "png")):
            pipe.pttl(key)
        ttls = pipe.execute()
    assert len(set(ttls)) == 1 and 0 < ttls[0] <= 120_000


def test_a_plot_is_kept_once(redis_client, redis_server):
    store = make_store(redis.Redis.from_url(redis_server.url))  # bytes, as the API reads them
    store.create("j", spec=SPEC, draws_total=1)
    record = store.get("j")
    assert store.cached_plot("j", "svg") is None
    assert store.keep_plot(record, "svg", b"first") == b"first"
    assert store.keep_plot(record, "svg", b"second") == b"first"
    assert store.cached_plot("j", "svg") == b"first"


def test_the_unfinished_limit_is_checked_and_applied_in_one_step(redis_client):
    store = make_store(redis_client)
    for name in ("a", "b"):
        store.create(name, spec=SPEC, draws_total=1, max_unfinished=2)
    try:
        store.create("c", spec=SPEC, draws_total=1, max_unfinished=2)
    except QueueFull:
        pass
    else:
        raise AssertionError("expected QueueFull")
    assert not redis_client.exists(keys.job("c"))
    store.cancel("a")
    store.create("c", spec=SPEC, draws_total=1, max_unfinished=2)
    assert store.backlog() == 2


def test_a_final_transition_counts_the_job_in_the_same_call(redis_client):
    store = make_store(redis_client)
    store.create("j", spec=SPEC, draws_total=1)
    assert store.fail("j", JobError(code="source_unavailable", message="gone"))
    assert not store.cancel("j")  # already final: counted once only
    counters = redis_client.hgetall(keys.metric_counters())
    assert counters == {"jobs_finished_total|failed|source_unavailable": "1"}
    histogram = redis_client.hgetall(keys.metric_histogram("job_duration_seconds"))
    assert histogram["count"] == "1" and histogram["le:0.25"] == "1"


# --- replicate stages: started once, each chunk saved and counted once --------------------


def stage_job(store: JobStore) -> None:
    store.create("j", spec=spec(methods=["em"]), draws_total=4, counts=[[1, 4, 2], [3, 4, 2]])
    store.start_fitting("j", [[1, 4, 2], [3, 4, 2]])


def test_a_stage_starts_once_and_becomes_the_job_progress(redis_client):
    store = make_store(redis_client)
    stage_job(store)
    assert store.stage_setup("j", "bootstrap", 0) is None
    assert store.start_stage("j", "bootstrap", 0, {"layout": 1}, replicates=10) is Saved.WRITTEN
    assert store.start_stage("j", "bootstrap", 0, {"layout": 2}, replicates=10) is Saved.ALREADY
    assert store.stage_setup("j", "bootstrap", 0) == {"layout": 1}
    progress = store.get("j").to_json()["progress"]
    assert progress == {"draws_fetched": 4, "draws_total": 4, "replicates": {
        "analysis": "bootstrap", "stage": None, "done": 0, "total": 10}}
    assert store.start_stage("nope", "bootstrap", 0, {}, replicates=1) is Saved.NO_JOB


def test_each_chunk_is_saved_and_counted_once_and_one_save_completes_the_stage(redis_client):
    store = make_store(redis_client)
    stage_job(store)
    store.start_stage("j", "components_test", 2, {}, replicates=5)
    first = [{"index": 0, "statistic": 1.0, "failed": False}]
    rest = [{"index": i, "statistic": 0.5, "failed": False} for i in (1, 2, 3, 4)]
    assert store.save_chunk("j", "components_test", 2, 0, first, chunks=2) is Saved.WRITTEN
    assert store.save_chunk("j", "components_test", 2, 0, rest, chunks=2) is Saved.ALREADY
    assert store.get("j").replicates.done == 1
    assert store.has_chunk("j", "components_test", 2, 0)
    assert not store.has_chunk("j", "components_test", 2, 1)
    assert store.save_chunk("j", "components_test", 2, 1, rest, chunks=2) is Saved.COMPLETED
    assert store.save_chunk("j", "components_test", 2, 1, rest, chunks=2) is Saved.ALREADY
    assert store.chunks_saved("j", "components_test", 2) == 2
    assert store.saved_chunks("j", "components_test", 2) == {0, 1}
    assert sorted(r["index"] for r in store.stage_replicates("j", "components_test", 2)) == [
        0, 1, 2, 3, 4]
    assert store.stage_replicates("j", "components_test", 1) == []
    assert store.get("j").to_json()["progress"]["replicates"] == {
        "analysis": "components_test", "stage": 2, "done": 5, "total": 5}


def test_concurrent_saves_of_a_stage_complete_it_exactly_once(redis_client, redis_server):
    from concurrent.futures import ThreadPoolExecutor

    store = make_store(redis_client)
    stage_job(store)
    store.start_stage("j", "bootstrap", 0, {}, replicates=40)
    # Every chunk delivered twice, all at once, from separate connections.
    deliveries = [chunk for chunk in range(20) for _ in range(2)]

    def save(chunk: int) -> Saved:
        own = make_store(redis.Redis.from_url(redis_server.url))
        replicates = [{"index": 2 * chunk + i} for i in range(2)]
        return own.save_chunk("j", "bootstrap", 0, chunk, replicates, chunks=20)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(save, deliveries))
    assert outcomes.count(Saved.COMPLETED) == 1
    assert outcomes.count(Saved.ALREADY) == 20
    assert store.get("j").replicates.done == 40


def test_progress_events_come_at_whole_percents_of_the_stage(redis_client):
    store = make_store(redis_client)
    stage_job(store)
    store.start_stage("j", "bootstrap", 0, {}, replicates=1000)
    for chunk in range(500):
        pair = [{"index": 2 * chunk}, {"index": 2 * chunk + 1}]
        store.save_chunk("j", "bootstrap", 0, chunk, pair, chunks=500)
    events = [fields for _, fields in redis_client.xrange(keys.job_events("j"))
              if fields["type"] == "progress"]
    # The start (0 of 1000), then one event per percent: done = 10, 20, ..., 1000.
    assert [int(e["replicates_done"]) for e in events] == [0, *range(10, 1001, 10)]
    assert {e["replicates_analysis"] for e in events} == {"bootstrap"}
    assert {e["draws_fetched"] for e in events} == {"4"}


def test_a_finished_job_records_no_replicates(redis_client):
    store = make_store(redis_client)
    stage_job(store)
    store.start_stage("j", "bootstrap", 0, {}, replicates=2)
    store.cancel("j")
    assert store.save_chunk("j", "bootstrap", 0, 0, [{"index": 0}], chunks=2) is Saved.NO_JOB
    assert store.start_stage("j", "bootstrap", 1, {}, replicates=2) is Saved.NO_JOB
    assert not store.has_chunk("j", "bootstrap", 0, 0)
    assert store.get("j").replicates.done == 0


def test_outcomes_are_write_once(redis_client):
    store = make_store(redis_client)
    stage_job(store)
    assert store.outcome("j", "components_test") is None
    assert store.keep_outcome("j", "components_test", {"selected": 2}) is Saved.WRITTEN
    assert store.keep_outcome("j", "components_test", {"selected": 3}) is Saved.ALREADY
    assert store.outcome("j", "components_test") == {"selected": 2}
    assert store.keep_outcome("nope", "x", 1) is Saved.NO_JOB


def test_the_analyses_keys_expire_with_the_job_and_go_with_it(redis_client):
    store = make_store(redis_client, ttl=120)
    stage_job(store)
    store.start_stage("j", "bootstrap", 0, {}, replicates=2)
    store.save_chunk("j", "bootstrap", 0, 0, [{"index": 0}], chunks=2)
    store.keep_outcome("j", "components_test:fit:1", {"thetas": [0.5]})
    with redis_client.pipeline(transaction=True) as pipe:
        for key in (keys.job("j"), keys.job_replicates("j"), keys.job_analyses("j"),
                    keys.job_events("j")):
            pipe.pttl(key)
        ttls = pipe.execute()
    assert len(set(ttls)) == 1 and 0 < ttls[0] <= 120_000
    store.delete("j")
    assert redis_client.keys("*") == []
