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
    assert ids == ["job.fit.em", "job.fit.gmm", "job.finish",
                   "job.fetch.0", "job.fetch.1", "job.fetch.2"]
    inline = canvas.task_ids("job", {"methods": ["em"], "source": None}, batch_size=10)
    assert inline == ["job.fit.em", "job.finish"]


def test_source_canvas_fetches_then_fits_then_finishes():
    # Celery turns chain(group, chord) into chord(fetches, body=chord(fits, finish)).
    signature = dict(canvas.build("job", SPEC, batch_size=10))
    header, body = signature["kwargs"]["header"], signature["kwargs"]["body"]
    assert [(t["task"], tuple(t["args"])) for t in header] == [
        ("emcoins.fetch_batch", ("job", "http://x/draw", 0, 0, 10)),
        ("emcoins.fetch_batch", ("job", "http://x/draw", 1, 10, 10)),
        ("emcoins.fetch_batch", ("job", "http://x/draw", 2, 20, 5)),
    ]
    assert all(t["immutable"] for t in header)
    fits = body["kwargs"]["header"]
    assert [(t["task"], list(t["args"])) for t in fits] == [
        ("emcoins.fit", ["job", "em"]),
        ("emcoins.fit", ["job", "gmm"]),
    ]
    assert body["kwargs"]["body"]["task"] == "emcoins.finish"
    ids = [t["options"]["task_id"] for t in header + fits] + [
        body["kwargs"]["body"]["options"]["task_id"]
    ]
    assert sorted(ids) == sorted(canvas.task_ids("job", SPEC, batch_size=10))


def test_inline_canvas_only_fits():
    signature = dict(canvas.build("job", {"methods": ["gmm"], "source": None}, batch_size=10))
    assert [t["task"] for t in signature["kwargs"]["header"]] == ["emcoins.fit"]
    assert signature["kwargs"]["body"]["task"] == "emcoins.finish"


def test_routes_send_fetching_to_io_and_fits_to_cpu():
    from workers.celery_app import app

    routes = app.conf.task_routes
    assert routes["emcoins.fetch_batch"]["queue"] == "io"
    assert routes["emcoins.fit"]["queue"] == routes["emcoins.finish"]["queue"] == "cpu"
    assert app.conf.accept_content == ["json"] and app.conf.task_acks_late
