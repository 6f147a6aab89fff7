"""How a job becomes subtasks: batches, subtask ids, queues, sent by name."""

from __future__ import annotations

import json

import pytest
import redis
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st

from shared import taskqueue
from shared.config import get_settings
from shared.dispatch import Dispatcher
from tests.factories import spec

SOURCE = spec(source=("http://x/draw", 25))
INLINE = spec()


@given(st.integers(1, 5000), st.integers(1, 100))
def test_batches_cover_every_draw_once(total, size):
    batches = taskqueue.batches(total, size)
    covered = [i for first, count in batches for i in range(first, first + count)]
    assert covered == list(range(total))
    assert all(1 <= count <= size for _, count in batches)
    assert len(batches) == -(-total // size)


def test_task_ids_name_every_subtask():
    ids = taskqueue.task_ids("job", SOURCE, batch_size=10)
    assert ids == ["job.fit.em", "job.fit.gmm", "job.fit.em+gmm",
                   "job.fetch.0", "job.fetch.1", "job.fetch.2"]
    assert taskqueue.task_ids("job", spec(methods=["em"]), batch_size=10) == ["job.fit.em"]
    assert taskqueue.job_of("job.fetch.3") == "job" and taskqueue.job_of("celery") is None


@pytest.fixture
def dispatcher(redis_client, redis_server) -> Dispatcher:
    """A dispatcher on a Celery client of its own, as the API makes one."""
    celery = Celery("test-client", set_as_current=False)
    celery.conf.update(taskqueue.celery_config(get_settings()))
    return Dispatcher(celery, redis.Redis.from_url(redis_server.url), batch_size=10)


def queued(redis_client, queue: str) -> list[dict]:
    """The task messages waiting in a Celery queue (a Redis list), oldest first."""
    return [json.loads(raw)["headers"] for raw in reversed(redis_client.lrange(queue, 0, -1))]


def test_a_source_job_starts_with_one_fetch_per_batch(redis_client, dispatcher):
    dispatcher.submit("job", SOURCE)
    headers = queued(redis_client, "io")
    assert [(h["task"], h["id"]) for h in headers] == [
        ("emcoins.fetch_batch", "job.fetch.0"),
        ("emcoins.fetch_batch", "job.fetch.1"),
        ("emcoins.fetch_batch", "job.fetch.2"),
    ]
    assert [h["argsrepr"] for h in headers] == [
        "('job', 'http://x/draw', 0, 0, 10)",
        "('job', 'http://x/draw', 1, 10, 10)",
        "('job', 'http://x/draw', 2, 20, 5)",
    ]
    assert redis_client.llen("cpu") == 0


def test_an_inline_job_starts_with_its_fits_in_parallel_when_workers_are_free(
    redis_client, dispatcher
):
    dispatcher.submit("job", INLINE)
    assert [h["id"] for h in queued(redis_client, "cpu")] == ["job.fit.em", "job.fit.gmm"]
    assert [h["argsrepr"] for h in queued(redis_client, "cpu")] == [
        "('job', ['em'])", "('job', ['gmm'])"
    ]
    assert redis_client.llen("io") == 0


def test_under_load_a_job_fits_all_its_methods_in_one_subtask(redis_client, dispatcher):
    dispatcher.submit("a", INLINE)
    dispatcher.submit("b", INLINE)
    ids = [h["id"] for h in queued(redis_client, "cpu")]
    assert ids == ["a.fit.em", "a.fit.gmm", "b.fit.em+gmm"]


def test_a_job_choosing_k_fits_in_one_subtask_so_k_is_chosen_once(redis_client, dispatcher):
    dispatcher.submit("job", spec(n_components="auto"))
    assert [h["id"] for h in queued(redis_client, "cpu")] == ["job.fit.em+gmm"]


def test_routes_send_fetching_to_io_and_fits_to_cpu():
    config = taskqueue.celery_config(get_settings())
    assert config["task_routes"]["emcoins.fetch_batch"]["queue"] == "io"
    assert config["task_routes"]["emcoins.fit"]["queue"] == "cpu"
    assert config["accept_content"] == ["json"] and config["task_acks_late"]
    assert "result_backend" not in config


def queued_ids(redis_client, queue: str) -> list[str]:
    return [headers["id"] for headers in queued(redis_client, queue)]


def test_a_resumed_source_job_fetches_only_its_missing_batches(redis_client, dispatcher):
    dispatcher.resume("job", SOURCE, fetched={0, 2}, fitted=set())
    assert queued_ids(redis_client, "io") == ["job.fetch.1"]
    assert queued(redis_client, "io")[0]["argsrepr"] == "('job', 'http://x/draw', 1, 10, 10)"
    assert queued_ids(redis_client, "cpu") == []


def test_a_resumed_job_with_every_batch_fits_the_methods_not_saved(redis_client, dispatcher):
    dispatcher.resume("job", SOURCE, fetched={0, 1, 2}, fitted={"em"})
    assert queued_ids(redis_client, "io") == []
    assert queued_ids(redis_client, "cpu") == ["job.fit.gmm"]


def test_a_resumed_inline_job_starts_its_fits(redis_client, dispatcher):
    dispatcher.resume("job", INLINE, fetched=set(), fitted=set())
    assert queued_ids(redis_client, "cpu") == ["job.fit.em", "job.fit.gmm"]


def test_a_resumed_job_with_every_part_saved_sends_the_fit_that_stores_the_result(
    redis_client, dispatcher
):
    dispatcher.resume("job", INLINE, fetched=set(), fitted={"em", "gmm"})
    assert queued_ids(redis_client, "cpu") == ["job.fit.em+gmm"]
