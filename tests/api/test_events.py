"""GET /jobs/<id>/events in-process: the events app's streams over the session's Redis.

The stream's generator is plain blocking code (gevent only makes many of them cheap), so
Flask's test client reads it here; tests/integration/test_events.py runs the real process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from apispec import APISpec

from api import create_app, create_events_app
from api.auth import owner_of
from api.events import document
from shared.contract import JobError
from shared.store import JobStore
from tests import factories

ALICE, BOB = "alice-token", "bob-token"
SOURCE = ("http://127.0.0.1:9/draw", 20)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_sse(response, *, limit: float = 10.0) -> Iterator[dict]:
    """Each event or comment of a streamed response, as a dict of its fields; stops
    (failing) after ``limit`` seconds. A comment is ``{"comment": text}``."""
    deadline = time.monotonic() + limit
    buffer = ""
    for chunk in response.response:
        assert time.monotonic() < deadline, "the stream went on too long"
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields: dict = {}
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                if name == "":
                    fields["comment"] = value.strip()
                else:
                    fields[name] = value[1:] if value.startswith(" ") else value
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
            yield fields
    assert buffer == "", f"the stream ended inside an event: {buffer!r}"


def events_of(response, **kwargs) -> list[dict]:
    """The events of a stream that ends (no comments, no retry line)."""
    return [e for e in read_sse(response, **kwargs) if "event" in e]


def ids(events: list[dict]) -> list[tuple[int, int]]:
    return [tuple(int(part) for part in e["id"].split("-")) for e in events if "id" in e]


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, ttl_seconds=3600)


@pytest.fixture
def events_app(redis_client):
    return create_events_app({"TESTING": True, "EVENTS_KEEPALIVE_SECONDS": 30})


def run_job(store: JobStore, job_id: str, *, owner: str | None = None) -> None:
    """A source job of two batches, fetched and fitted, as the workers write it."""
    store.create(job_id, spec=factories.spec(source=SOURCE), draws_total=20, batches_total=2,
                 owner=owner)
    assert store.start_fetching(job_id)
    store.record_batch(job_id, 0, [(3, 10)] * 10)
    store.record_batch(job_id, 1, [(7, 10)] * 10)
    assert store.start_fitting(job_id, [[3, 10, 10], [7, 10, 10]])
    assert store.succeed(job_id, factories.result())


def test_a_finished_job_replays_its_events_then_done_and_ends_at_once(store, events_app):
    run_job(store, "j1")
    started = time.monotonic()
    response = events_app.test_client().get("/jobs/j1/events")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = events_of(response)
    assert time.monotonic() - started < 2  # the keep-alive is 30 s: nothing waited
    assert [(e["event"], e["data"]) for e in events[:-1]] == [
        ("status", {"status": "queued"}),
        ("status", {"status": "fetching"}),
        ("progress", {"draws_fetched": 10, "draws_total": 20}),
        ("progress", {"draws_fetched": 20, "draws_total": 20}),
        ("status", {"status": "fitting"}),
        ("status", {"status": "succeeded"}),
    ]
    assert ids(events) == sorted(set(ids(events))) and len(ids(events)) == 6
    done = events[-1]
    assert done["event"] == "done" and "id" not in done
    polled = create_app({"TESTING": True}).test_client().get("/jobs/j1")
    assert done["data"] == polled.get_json()
    assert done["data"]["status"] == "succeeded"


def test_the_stream_starts_with_a_retry_interval(store, events_app):
    run_job(store, "j1")
    first = next(read_sse(events_app.test_client().get("/jobs/j1/events")))
    assert first == {"retry": "2000"}


def test_last_event_id_resumes_after_it_without_repeats(store, events_app):
    run_job(store, "j1")
    client = events_app.test_client()
    everything = events_of(client.get("/jobs/j1/events"))
    for cut in range(len(everything) - 1):
        resumed = events_of(client.get("/jobs/j1/events",
                                       headers={"Last-Event-ID": everything[cut]["id"]}))
        assert resumed == everything[cut + 1:]


def test_a_last_event_id_not_given_out_is_a_422(store, events_app):
    run_job(store, "j1")
    response = events_app.test_client().get("/jobs/j1/events",
                                            headers={"Last-Event-ID": "'; DROP"})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {
        "Last-Event-ID": "Not an event id this service gave out."
    }


def test_a_running_job_streams_each_change_as_it_happens(store, redis_client):
    app = create_events_app({"TESTING": True, "EVENTS_KEEPALIVE_SECONDS": 30,
                             "EVENTS_CHECK_SECONDS": 5})
    store.create("j2", spec=factories.spec(source=SOURCE), draws_total=20, batches_total=2)

    def work():
        time.sleep(0.3)
        store.start_fetching("j2")
        time.sleep(0.3)
        store.record_batch("j2", 0, [(3, 10)] * 10)
        time.sleep(0.3)
        store.fail("j2", JobError(code="source_unavailable", message="gone", details={}))

    worker = threading.Thread(target=work)
    worker.start()
    try:
        events = events_of(app.test_client().get("/jobs/j2/events"))
    finally:
        worker.join()
    assert [e["event"] for e in events] == ["status", "status", "progress", "status", "done"]
    assert events[3]["data"] == {"status": "failed"}
    assert events[4]["data"]["error"]["code"] == "source_unavailable"


def test_a_quiet_stream_gets_keep_alive_comments(store, redis_client):
    app = create_events_app({"TESTING": True, "EVENTS_KEEPALIVE_SECONDS": 0.3})
    store.create("j3", spec=factories.spec(source=SOURCE), draws_total=20, batches_total=2)
    started = time.monotonic()
    seen = []
    for item in read_sse(app.test_client().get("/jobs/j3/events")):
        seen.append(item)
        if sum(1 for i in seen if i.get("comment") == "keep-alive") == 2:
            break
    elapsed = time.monotonic() - started
    assert [i.get("event") for i in seen if "event" in i] == ["status"]
    assert 0.55 < elapsed < 3, elapsed


def test_the_stream_ends_when_the_job_is_deleted(store, redis_client):
    app = create_events_app({"TESTING": True, "EVENTS_KEEPALIVE_SECONDS": 30,
                             "EVENTS_CHECK_SECONDS": 0.2})
    store.create("j4", spec=factories.spec(source=SOURCE), draws_total=20, batches_total=2)
    deleter = threading.Timer(0.5, store.delete, args=("j4",))
    deleter.start()
    started = time.monotonic()
    try:
        events = events_of(app.test_client().get("/jobs/j4/events"), limit=5)
    finally:
        deleter.join()
    assert [e["event"] for e in events] == ["status"]  # queued; no done: there is no job
    assert 0.4 < time.monotonic() - started < 2


def test_an_unknown_job_is_a_404_with_cors(events_app):
    response = events_app.test_client().get("/jobs/nope/events")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.fixture
def secured(redis_client):
    return create_events_app({"TESTING": True, "api_tokens": (ALICE, BOB)}).test_client()


def test_only_the_owner_token_reads_the_stream(store, secured):
    run_job(store, "j5", owner=owner_of(ALICE))
    assert secured.get("/jobs/j5/events").status_code == 401
    assert secured.get("/jobs/j5/events", headers=bearer("mallory")).status_code == 401
    other = secured.get("/jobs/j5/events", headers=bearer(BOB))
    assert other.status_code == 404
    assert other.get_json()["error"]["message"] == "No job j5."
    mine = secured.get("/jobs/j5/events", headers=bearer(ALICE))
    assert events_of(mine)[-1]["data"]["id"] == "j5"


def test_a_preflight_is_answered_without_a_token(secured):
    response = secured.options("/jobs/j5/events", headers={
        "Origin": "http://127.0.0.1:8000",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, last-event-id",
    })
    assert response.status_code == 204
    allowed = {h.strip().lower()
               for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "last-event-id"} <= allowed
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]


def test_the_probe_is_public(secured):
    response = secured.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_the_events_app_serves_nothing_of_the_api(events_app):
    client = events_app.test_client()
    for path in ("/jobs", "/", "/openapi.json", "/static/app.js"):
        assert client.get(path).status_code == 404, path


def test_document_adds_the_path_on_the_events_server():
    spec = APISpec("t", "1", "3.0.3")
    document(spec, "http://127.0.0.1:8002/")
    path = spec.to_dict()["paths"]["/jobs/{job_id}/events"]
    operation = path["get"]
    assert operation["servers"] == [{"url": "http://127.0.0.1:8002"}]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert [p["name"] for p in path["parameters"] + operation["parameters"]] == [
        "job_id", "Last-Event-ID"
    ]


def test_document_fits_the_api_s_own_description(redis_client):
    # As create_app would call it: through flask-smorest's plugin, with its 503 and 401.
    app = create_app({"TESTING": True, "api_tokens": (ALICE,),
                      "events_url": "http://127.0.0.1:8002"})
    document(app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec,
             app.config["SETTINGS"].events_url)
    description = app.test_client().get("/openapi.json").get_json()
    path = description["paths"]["/jobs/{job_id}/events"]
    assert [p["name"] for p in path["parameters"]] == ["job_id"]
    assert {"200", "401", "404", "422", "503"} <= set(path["get"]["responses"])
