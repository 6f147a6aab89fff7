"""How a job becomes a canvas: batches, subtask ids, queues."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers import canvas

SPEC = {"methods": ["em", "gmm"], "source": {"url": "http://x/draw", "draws": 25}}


@given(st.integers(1, 5000), st.integers(1, 100))
def test_batches_cover_every_draw_once(total, size):
    batches = canvas.batches(total, size)
    covered = [i for first, count in batches for i in range(first, first + count)]
    assert covered == list(range(total))
    assert all(1 <= count <= size for _, count in batches)
    assert len(batches) == -(-total // size)


def test_task_ids_name_every_subtask():
    ids = canvas.task_ids("job", SPEC, batch_size=10)
    assert ids == ["job.fit.em", "job.fit.gmm", "job.fit.em+gmm",
                   "job.fetch.0", "job.fetch.1", "job.fetch.2"]
    inline = canvas.task_ids("job", {"methods": ["em"], "source": None}, batch_size=10)
    assert inline == ["job.fit.em"]


def queued(redis_client, queue: str) -> list[dict]:
    """The task messages waiting in a Celery queue (a Redis list), oldest first."""
    import json

    return [json.loads(raw)["headers"] for raw in reversed(redis_client.lrange(queue, 0, -1))]


def test_a_source_job_starts_with_one_fetch_per_batch(redis_client):
    canvas.submit("job", SPEC, batch_size=10)
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


def test_an_inline_job_starts_with_its_fits_in_parallel_when_workers_are_free(redis_client):
    canvas.submit("job", {"methods": ["em", "gmm"], "source": None}, batch_size=10)
    assert [h["id"] for h in queued(redis_client, "cpu")] == ["job.fit.em", "job.fit.gmm"]
    assert [h["argsrepr"] for h in queued(redis_client, "cpu")] == [
        "('job', ['em'])", "('job', ['gmm'])"
    ]
    assert redis_client.llen("io") == 0


def test_under_load_a_job_fits_all_its_methods_in_one_subtask(redis_client):
    canvas.submit("a", {"methods": ["em", "gmm"], "source": None}, batch_size=10)
    canvas.submit("b", {"methods": ["em", "gmm"], "source": None}, batch_size=10)
    ids = [h["id"] for h in queued(redis_client, "cpu")]
    assert ids == ["a.fit.em", "a.fit.gmm", "b.fit.em+gmm"]


def test_routes_send_fetching_to_io_and_fits_to_cpu():
    from workers.celery_app import app

    routes = app.conf.task_routes
    assert routes["emcoins.fetch_batch"]["queue"] == "io"
    assert routes["emcoins.fit"]["queue"] == "cpu"
    assert app.conf.accept_content == ["json"] and app.conf.task_acks_late
