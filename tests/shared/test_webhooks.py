"""Completion callbacks: signatures, the retry rule, and the due set's claims on a real Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared import keys
from shared.store import JobStore
from shared.webhooks import (
    CallbackStatus,
    Deliveries,
    Due,
    Next,
    Verdict,
    max_attempts,
    message_id,
    next_step,
    payload,
    signed_headers,
    verdict,
)
from tests.factories import result, spec

SECRET = "whsec_" + base64.b64encode(b"emcoins test secret, 32 bytes!!").decode()
URL = "http://127.0.0.1:9/hook"


# --- Signatures -------------------------------------------------------------------------


def test_signature_reproduces_the_published_test_vector():
    # The Standard Webhooks specification's example: secret, id, timestamp, body, signature.
    headers = signed_headers(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_signature_is_hmac_sha256_of_id_timestamp_body():
    body = b'{"id":"abc","status":"succeeded"}'
    headers = signed_headers(SECRET, msg_id="msg_abc", timestamp=1700000000, body=body)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, b"msg_abc.1700000000." + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


def test_receivers_verify_with_the_standardwebhooks_package():
    body = json.dumps({"id": "j1", "note": "caf\u00e9"}).encode()
    headers = signed_headers(SECRET, msg_id="msg_j1", timestamp=int(time.time()), body=body)
    assert Webhook(SECRET).verify(body, headers) == {"id": "j1", "note": "caf\u00e9"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"j1", b"j2"), headers)
    other = "whsec_" + base64.b64encode(b"another secret").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_webhook_id_is_stable_per_job():
    assert message_id("abc123") == message_id("abc123") == "msg_abc123"
    assert message_id("abc124") != message_id("abc123")


# --- Retry rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status):
    assert verdict(status) is Verdict.DELIVERED


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 599])
def test_timeouts_5xx_408_and_429_are_retried(status):
    assert verdict(status) is Verdict.RETRY


@pytest.mark.parametrize("status", [100, 301, 302, 303, 307, 308, 400, 401, 403, 404, 409, 410,
                                    413, 422, 451, 600])
def test_other_answers_stop_the_retries(status):
    assert verdict(status) is Verdict.STOP


def test_the_schedule_gives_one_attempt_more_than_its_pauses():
    schedule = (5.0, 30.0, 60.0)
    assert max_attempts(schedule) == 4
    assert next_step(503, attempt=1, schedule=schedule) == Next(CallbackStatus.PENDING, 5.0)
    assert next_step(None, attempt=2, schedule=schedule) == Next(CallbackStatus.PENDING, 30.0)
    assert next_step(429, attempt=3, schedule=schedule) == Next(CallbackStatus.PENDING, 60.0)
    assert next_step(500, attempt=4, schedule=schedule) == Next(CallbackStatus.FAILED)
    assert next_step(200, attempt=4, schedule=schedule) == Next(CallbackStatus.DELIVERED)
    assert next_step(404, attempt=1, schedule=schedule) == Next(CallbackStatus.FAILED)
    assert next_step(500, attempt=1, schedule=()) == Next(CallbackStatus.FAILED)


def test_the_default_schedule_lasts_about_an_hour():
    from shared.config import Settings

    pauses = Settings().webhook_retry_seconds
    assert 3000 <= sum(pauses) <= 3600 + 600


# --- The due set on Redis -------------------------------------------------------------------


def finished_job(store: JobStore, job_id: str, *, callback: str | None = URL) -> None:
    store.create(job_id, spec=spec(callback=callback), draws_total=1, counts=[[1, 1, 1]])
    assert store.start_fitting(job_id, [[1, 1, 1]])
    assert store.succeed(job_id, result(1))


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, ttl_seconds=600)


@pytest.fixture
def deliveries(redis_client) -> Deliveries:
    return Deliveries(redis_client)


def test_only_finished_jobs_with_a_callback_are_due(store, deliveries, redis_client):
    store.create("running", spec=spec(callback=URL), draws_total=1, counts=[[1, 1, 1]])
    finished_job(store, "plain", callback=None)
    assert deliveries.due(10) == Due([], None)
    finished_job(store, "hooked")
    assert deliveries.due(10).ids == ["hooked"]
    assert store.get("hooked").callback.to_json() == {
        "url": URL, "state": "pending", "attempts": 0, "last_status": None,
    }


def test_a_claim_counts_the_attempt_and_hides_the_entry_for_its_lease(store, deliveries):
    finished_job(store, "j")
    claim = deliveries.claim("j", lease_seconds=60, max_attempts=3)
    assert claim is not None and (claim.job_id, claim.attempt, claim.url) == ("j", 1, URL)
    assert store.get("j").callback.attempts == 1
    due = deliveries.due(10)
    assert due.ids == [] and 59_000 < due.next_in_ms <= 60_000
    assert deliveries.claim("j", lease_seconds=60, max_attempts=3) is None
    assert store.get("j").callback.attempts == 1


def test_two_claimers_get_disjoint_entries(store, deliveries, redis_client):
    ids = [f"j{i}" for i in range(200)]
    for job_id in ids:
        finished_job(store, job_id)
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claimer(name: str) -> None:
        mine = Deliveries(redis_client)  # its own scripts, as another worker process has
        start.wait()
        while due := mine.due(7).ids:
            for job_id in due:
                if mine.claim(job_id, lease_seconds=60, max_attempts=3):
                    claimed[name].append(job_id)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    a, b = set(claimed["a"]), set(claimed["b"])
    assert len(a) == len(claimed["a"]) and len(b) == len(claimed["b"])
    assert not a & b
    assert a | b == set(ids)
    assert {store.get(i).callback.attempts for i in ids} == {1}


def test_a_retry_is_due_after_its_pause_with_the_next_attempt(store, deliveries):
    finished_job(store, "j")
    first = deliveries.claim("j", lease_seconds=60, max_attempts=3)
    assert deliveries.finish(first, Next(CallbackStatus.PENDING, 0.3), last_status=503)
    assert store.get("j").callback.to_json() == {
        "url": URL, "state": "pending", "attempts": 1, "last_status": 503,
    }
    due = deliveries.due(10)
    assert due.ids == [] and 0 < due.next_in_ms <= 300
    time.sleep(due.next_in_ms / 1000 + 0.01)
    assert deliveries.due(10).ids == ["j"]
    second = deliveries.claim("j", lease_seconds=60, max_attempts=3)
    assert second.attempt == 2
    # No answer at all: the last status shown is none, not the attempt before's.
    assert deliveries.finish(second, Next(CallbackStatus.PENDING, 0), last_status=None)
    assert store.get("j").callback.last_status is None


def test_delivered_and_failed_leave_the_due_set(store, deliveries, redis_client):
    finished_job(store, "ok")
    finished_job(store, "bad")
    ok = deliveries.claim("ok", lease_seconds=0, max_attempts=3)
    bad = deliveries.claim("bad", lease_seconds=0, max_attempts=3)
    assert deliveries.finish(ok, Next(CallbackStatus.DELIVERED), last_status=204)
    assert deliveries.finish(bad, Next(CallbackStatus.FAILED), last_status=400)
    assert redis_client.zcard(keys.webhooks_due()) == 0
    assert store.get("ok").callback.to_json()["state"] == "delivered"
    assert store.get("bad").callback.to_json() == {
        "url": URL, "state": "failed", "attempts": 1, "last_status": 400,
    }
    # Settled: a late finish of the same claim changes nothing.
    assert not deliveries.finish(ok, Next(CallbackStatus.FAILED), last_status=500)
    assert store.get("ok").callback.state == "delivered"


def test_an_overtaken_claim_cannot_record_its_outcome(store, deliveries):
    finished_job(store, "j")
    slow = deliveries.claim("j", lease_seconds=0, max_attempts=5)  # lease already over
    fresh = deliveries.claim("j", lease_seconds=60, max_attempts=5)
    assert (slow.attempt, fresh.attempt) == (1, 2)
    assert not deliveries.finish(slow, Next(CallbackStatus.FAILED), last_status=400)
    assert store.get("j").callback.state == "pending"
    assert deliveries.finish(fresh, Next(CallbackStatus.DELIVERED), last_status=200)
    assert store.get("j").callback.to_json()["state"] == "delivered"


def test_a_last_attempt_whose_worker_died_fails_the_callback(store, deliveries, redis_client):
    finished_job(store, "j")
    assert deliveries.claim("j", lease_seconds=0, max_attempts=1).attempt == 1
    # The worker died without recording: the entry is due again, with no attempt left.
    assert deliveries.claim("j", lease_seconds=0, max_attempts=1) is None
    assert store.get("j").callback.state == "failed"
    assert redis_client.zcard(keys.webhooks_due()) == 0


def test_a_deleted_job_is_dropped_from_the_due_set(store, deliveries, redis_client):
    finished_job(store, "j")
    assert store.delete("j")
    assert deliveries.due(10).ids == ["j"]
    assert deliveries.claim("j", lease_seconds=60, max_attempts=3) is None
    assert redis_client.zcard(keys.webhooks_due()) == 0


def test_payload_is_the_jobs_api_json(store):
    finished_job(store, "j")
    body = json.loads(payload(store.get("j")))
    assert body["id"] == "j" and body["status"] == "succeeded"
    assert body["spec"]["callback"] == {"url": URL}
    assert body["callback"] == {"url": URL, "state": "pending", "attempts": 0,
                                "last_status": None}
    assert body["result"]["gmm"]["means"] == [0.1, 0.9]
    assert body["finished_at"].endswith("Z")
