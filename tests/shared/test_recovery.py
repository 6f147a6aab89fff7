"""The sweep for jobs no task carries, against the real Redis and real Celery messages."""

from __future__ import annotations

import time

import pytest
from celery import Celery

from shared import keys, taskqueue
from shared.config import get_settings
from shared.dispatch import Dispatcher
from shared.recovery import Orphans
from shared.store import JobStore
from tests.factories import spec

# Jobs count as old at once; the tests wait this long after creating them.
INTERVAL = 0.05
TTL = 3600


@pytest.fixture
def celery(redis_server) -> Celery:
    """A Celery client of the service's configuration, as the API makes one."""
    app = Celery("test-client", set_as_current=False)
    app.conf.update(taskqueue.celery_config(get_settings()))
    return app


@pytest.fixture
def dispatcher(celery, redis_client) -> Dispatcher:
    return Dispatcher(celery, redis_client, batch_size=10)


@pytest.fixture
def jobs(redis_client) -> JobStore:
    return JobStore(redis_client, ttl_seconds=TTL)


def sweep(redis_client, **options):
    return Orphans(redis_client, **options).sweep(interval_seconds=INTERVAL, ttl_seconds=TTL)


def old_jobs(jobs: JobStore, *ids: str, job_spec=None) -> None:
    for job_id in ids:
        jobs.create(job_id, spec=job_spec or spec(), draws_total=4, counts=[[1, 2, 4]])
    time.sleep(INTERVAL * 2)


def test_a_job_named_by_no_task_is_lost_on_the_second_sweep_only(redis_client, jobs):
    old_jobs(jobs, "orphan")
    first = sweep(redis_client)
    assert (first.lost, first.suspects, first.skipped) == ((), 1, False)
    second = sweep(redis_client)
    assert (second.lost, second.suspects) == (("orphan",), 1)


def test_jobs_whose_tasks_wait_in_any_queue_are_not_lost(redis_client, jobs, dispatcher):
    old_jobs(jobs, "fitting", "fetching", "replicating", "orphan")
    dispatcher.start_fits("fitting", spec())
    dispatcher.start_fetching("fetching", "http://x/draw", 25)
    dispatcher.send_replicates("replicating", "bootstrap", 0, [3])
    assert {q: redis_client.llen(q) for q in taskqueue.QUEUES} == {
        "io": 3, "cpu": 2, "replicates": 1}
    for _ in range(3):
        found = sweep(redis_client)
        assert found.suspects == 1
    assert found.lost == ("orphan",)


def test_a_task_held_by_a_worker_keeps_its_job(redis_client, jobs, dispatcher, celery):
    old_jobs(jobs, "held")
    dispatcher.start_fits("held", spec(methods=["em"]))
    with celery.connection_for_read() as connection:
        # As a worker takes it: popped from the queue, kept in kombu's unacked hash.
        message = connection.default_channel.basic_get(taskqueue.CPU_QUEUE, no_ack=False)
        assert message is not None and message.headers["id"] == "held.fit.em"
        assert redis_client.llen(taskqueue.CPU_QUEUE) == 0
        assert redis_client.hlen(taskqueue.UNACKED_KEY) == 1
        for _ in range(2):
            assert sweep(redis_client).suspects == 0
        message.ack()
    sweep(redis_client)
    assert sweep(redis_client).lost == ("held",)


def test_new_and_finished_jobs_are_left_out(redis_client, jobs):
    old_jobs(jobs, "done")
    jobs.cancel("done")
    jobs.create("new", spec=spec(), draws_total=4, counts=[[1, 2, 4]])
    assert sweep(redis_client).suspects == 0
    assert sweep(redis_client).lost == ()


def test_a_job_seen_once_and_then_carried_is_not_lost(redis_client, jobs, dispatcher):
    old_jobs(jobs, "slow")
    assert sweep(redis_client).suspects == 1
    dispatcher.start_fits("slow", spec(methods=["em"]))
    assert sweep(redis_client).suspects == 0
    redis_client.delete(taskqueue.CPU_QUEUE)
    # Forgotten as a suspect when its task came: one sweep without a task is not enough.
    assert sweep(redis_client).lost == ()
    assert sweep(redis_client).lost == ("slow",)


def test_too_many_waiting_tasks_skip_the_sweep(redis_client, jobs, dispatcher):
    old_jobs(jobs, "orphan")
    dispatcher.start_fetching("other", "http://x/draw", 25)
    assert sweep(redis_client, max_messages=2).skipped
    assert sweep(redis_client, max_messages=3).suspects == 1


def test_one_claim_per_interval(redis_client):
    first, second = Orphans(redis_client), Orphans(redis_client)
    assert first.claim("a", 0.2)
    assert not second.claim("b", 0.2)
    assert redis_client.get(keys.recovery_lock()) == "a"
    time.sleep(0.3)
    assert second.claim("b", 0.2)


def test_many_lost_jobs_are_all_found(redis_client, jobs):
    ids = [f"job{i}" for i in range(2500)]
    old_jobs(jobs, *ids)
    assert sweep(redis_client).suspects == 2500
    assert sorted(sweep(redis_client).lost) == sorted(ids)


def test_suspects_expire(redis_client, jobs):
    old_jobs(jobs, "orphan")
    assert sweep(redis_client).suspects == 1
    ttl = redis_client.pttl(keys.recovery_suspects())
    assert 0 < ttl <= 2 * INTERVAL * 1000 + 1000


def test_the_sweep_reads_the_id_where_kombu_writes_it(redis_client, jobs, dispatcher):
    old_jobs(jobs, "real")
    dispatcher.start_fits("real", spec(methods=["em"]))
    raw = redis_client.lrange(taskqueue.CPU_QUEUE, 0, -1)[0]
    assert '"id": "real.fit.em"' in raw and '"root_id": "real.fit.em"' in raw
    assert sweep(redis_client).suspects == 0
