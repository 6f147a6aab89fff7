"""GET /jobs/<id>/events on the real stack: the gevent events process, real workers and
draw source; the emcoins CLI following the streams."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner

from cli.client import Client, ClientError, EventStreamParser, EventsUnavailable
from cli.main import cli
from localstack.ports import free_port
from localstack.stack import Stack, StackConfig

pytestmark = pytest.mark.integration

ALICE, BOB = "alice-events-token", "bob-events-token"
COUNTS_JOB = {"counts": [[3, 10], [8, 10]], "seed": 1}


def client(stack: Stack, token: str | None = None) -> Client:
    return Client(stack.api_url, token=token, timeout=10, events_url=stack.events_url)


def source_job(stack: Stack, draws: int) -> str:
    body = {"source": {"url": f"{stack.drawsource_url}/draw", "draws": draws},
            "seed": 3, "restarts": 2}
    return client(stack).submit(body)["id"]


def stream_ids(events) -> list[tuple[int, int]]:
    return [tuple(int(p) for p in e.id.split("-")) for e in events if e.id is not None]


def test_a_source_job_streams_every_change_in_order_then_itself(stack):
    api = client(stack)
    job_id = source_job(stack, 40)  # batches of 10 on the session stack
    events = list(api.follow(job_id, timeout=60))
    names = [(e.name, e.data.get("status")) for e in events]
    assert names == [("status", "queued"), ("status", "fetching"),
                     *[("progress", None)] * 4,
                     ("status", "fitting"), ("status", "succeeded"), ("done", "succeeded")]
    progress = [e.data for e in events if e.name == "progress"]
    assert [p["draws_fetched"] for p in progress] == [10, 20, 30, 40]
    assert {p["draws_total"] for p in progress} == {40}
    ids = stream_ids(events)
    assert len(ids) == len(events) - 1 and ids == sorted(set(ids))
    assert events[-1].id is None
    assert events[-1].data == api.job(job_id)


def test_last_event_id_resumes_without_repeats_and_a_finished_job_ends_at_once(stack):
    api = client(stack)
    job_id = source_job(stack, 20)
    everything = list(api.follow(job_id, timeout=60))
    for cut in (0, 2, len(everything) - 2):
        started = time.monotonic()
        resumed = list(api.follow(job_id, timeout=10, last_event_id=everything[cut].id))
        assert time.monotonic() - started < 1.5
        assert resumed == everything[cut + 1:]


def test_the_stream_is_sent_as_it_happens_not_at_the_end(stack):
    job_id = source_job(stack, 200)
    arrivals = []
    for event in client(stack).follow(job_id, timeout=60):
        arrivals.append((event.name, time.monotonic()))
    first_progress = next(t for name, t in arrivals if name == "progress")
    assert arrivals[-1][1] - first_progress > 0.05  # fetched and fitted after it arrived


def test_the_cli_follows_the_stream(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("EMCOINS_API_URL", stack.api_url)
    monkeypatch.setenv("EMCOINS_EVENTS_URL", stack.events_url)
    runner = CliRunner()
    source = f"{stack.drawsource_url}/draw"
    done = runner.invoke(cli, ["submit", "--source", source, "--draws", "30", "--restarts", "2",
                               "--seed", "7", "--wait"])
    assert done.exit_code == 0, done.output
    assert "fetching draws" in done.stderr and "polling" not in done.stderr
    job_id = done.stdout.split()[1].rstrip(":")
    log = (stack.log_dir / "events.log").read_text()
    assert f"/jobs/{job_id}/events" in log
    result = runner.invoke(cli, ["result", job_id])
    waited = runner.invoke(cli, ["wait", job_id])
    assert waited.exit_code == 0 and waited.stdout == result.stdout

    counts = tmp_path / "counts.csv"
    counts.write_text("3,10\n8,10\n2,10\n9,10\n")
    inline = runner.invoke(cli, ["submit", "--counts", str(counts), "--seed", "1", "--wait"])
    assert inline.exit_code == 0, inline.output
    assert "fetching draws" not in inline.stderr and "polling" not in inline.stderr

    missing = runner.invoke(cli, ["wait", "no-such-job"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "Error: No job no-such-job. [HTTP 404 not_found]"


def test_the_cli_polls_when_there_is_no_stream(stack, monkeypatch):
    monkeypatch.setenv("EMCOINS_API_URL", stack.api_url)
    monkeypatch.setenv("EMCOINS_EVENTS_URL", f"http://127.0.0.1:{free_port()}")
    done = CliRunner().invoke(cli, ["submit", "--source", f"{stack.drawsource_url}/draw",
                                    "--draws", "30", "--restarts", "2", "--wait"])
    assert done.exit_code == 0, done.output
    assert "polling instead" in done.stderr and "fetching draws" in done.stderr
    assert done.stdout.startswith("job ")


def test_following_without_an_events_service_says_so(stack):
    # The API itself serves no streams: a client pointed at it learns there is none.
    with pytest.raises(EventsUnavailable):
        next(Client(stack.api_url, timeout=10).follow(source_job(stack, 10), timeout=10))


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Iterator[Stack]:
    """Redis, the API and the events process with tokens, no workers: jobs stay queued."""
    config = StackConfig(
        api_port=0, drawsource_port=0, api_workers=1, start_workers=False,
        start_drawsource=False, env={"EMCOINS_API_TOKENS": f"{ALICE},{BOB}"},
        log_dir=tmp_path_factory.mktemp("held-stack-logs"),
    )
    with Stack(config) as running:
        yield running


def open_stream(stack: Stack, job_id: str, token: str | None, **headers) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{stack.events_url}/jobs/{job_id}/events", headers=headers,
                        stream=True, timeout=(5, 30))


def test_another_token_gets_a_404_and_none_a_401(held):
    job_id = client(held, ALICE).submit(COUNTS_JOB)["id"]
    with open_stream(held, job_id, BOB) as other:
        assert other.status_code == 404
        assert other.json()["error"]["message"] == f"No job {job_id}."
        assert other.headers["Access-Control-Allow-Origin"] == "*"
    with open_stream(held, job_id, None) as nobody:
        assert nobody.status_code == 401
    preflight = requests.options(
        f"{held.events_url}/jobs/{job_id}/events",
        headers={"Origin": held.api_url, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization,last-event-id"},
        timeout=5,
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    first = next(client(held, ALICE).follow(job_id, timeout=10))
    assert (first.name, first.data) == ("status", {"status": "queued"})


def test_more_streams_than_a_default_redis_pool_stay_open(held):
    # redis-py's pools stop at 100 connections unless told otherwise; each stream holds one.
    api = client(held, ALICE)
    jobs = [api.submit(COUNTS_JOB)["id"] for _ in range(150)]
    sockets = []
    try:
        for job_id in jobs:
            sock = socket.create_connection(("127.0.0.1", held.events_port), timeout=20)
            sock.sendall(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Authorization: Bearer {ALICE}\r\n\r\n".encode())
            sockets.append(sock)
        for sock in sockets:
            received = b""
            while b"\r\n\r\n" not in received or b"event: status" not in received:
                chunk = sock.recv(4096)
                assert chunk, received
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
        # All still open: none was ended for want of a Redis connection.
        time.sleep(1)
        for sock in sockets:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)
    finally:
        for sock in sockets:
            sock.close()


def test_the_api_page_is_told_where_the_streams_are(held):
    # The local stack gives the API its events process's URL (EMCOINS_EVENTS_URL).
    assert held.env()["EMCOINS_EVENTS_URL"] == held.events_url


@pytest.mark.slow
def test_a_quiet_stream_keeps_alive_and_ends_when_its_job_is_deleted(held):
    api = client(held, ALICE)
    job_id = api.submit(COUNTS_JOB)["id"]
    received: list[tuple[float, bytes]] = []

    def read() -> None:
        with open_stream(held, job_id, ALICE) as response:
            for chunk in response.iter_content(chunk_size=None):
                received.append((time.monotonic(), chunk))

    started = time.monotonic()
    reader = threading.Thread(target=read)
    reader.start()
    deadline = started + 25
    while not any(b": keep-alive" in chunk for _, chunk in received):
        assert time.monotonic() < deadline, received
        time.sleep(0.1)
    kept_alive = next(t for t, chunk in received if b": keep-alive" in chunk)
    assert 14 < kept_alive - started < 18
    api.delete(job_id)
    deleted = time.monotonic()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert time.monotonic() - deleted < 7  # the events process checks every 5 s
    events = EventStreamParser().feed(b"".join(chunk for _, chunk in received))
    # DELETE cancels first: the stream may see "cancelled" (and the job, if it reads it
    # before the record goes) or end on the record's removal alone.
    assert (events[0].name, events[0].data) == ("status", {"status": "queued"})
    rest = [(e.name, e.data["status"]) for e in events[1:]]
    assert rest in ([], [("status", "cancelled")], [("status", "cancelled"), ("done", "cancelled")])
    with pytest.raises(ClientError, match="No job"):
        api.job(job_id)



def test_the_events_port_comes_from_events_port_else_8002_or_free_with_a_free_api_port():
    assert StackConfig.from_env({}).events_port == 8002
    assert StackConfig.from_env({"EVENTS_PORT": "9002"}).events_port == 9002
    assert StackConfig.from_env({"API_PORT": "0"}).events_port == 0
    assert StackConfig.from_env({"API_PORT": "0", "EVENTS_PORT": "9002"}).events_port == 9002
    assert StackConfig().events_port == 0  # built in code: a free port
