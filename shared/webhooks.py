"""Completion callbacks: what to send, how to sign it, when to try again, and the due set.

A job with a callback is made due by the store's final transition (``callback_state``
pending, ``callback_attempts`` 0, its id in :func:`shared.keys.webhooks_due` scored by
Redis time in ms). io workers poll that sorted set and claim entries one at a time with
:meth:`Deliveries.claim`, which pushes the entry's score a lease ahead and counts the
attempt in one script, so two workers never send the same entry at once. The attempt's
outcome is recorded by :meth:`Deliveries.finish`: delivered and failed entries leave
the set, retried ones are scored at their next due time. Retries are never Celery
countdowns: the Redis broker hands a task delayed past its visibility timeout to a
second worker.

The body is the job's JSON as ``GET /jobs/<id>`` shows it, signed as the Standard
Webhooks specification says: ``webhook-id`` (one per job, the same on every attempt),
``webhook-timestamp`` (seconds, this attempt's) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` under the decoded secret).

Nothing here speaks HTTP; :mod:`workers.webhooks` sends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis
from standardwebhooks import Webhook

from shared import keys
from shared.replies import text
from shared.schemas import dump_job
from shared.store import NOW_MS_LUA, JobRecord

# Answers a later attempt may change: the receiver timed out, is rate-limiting, or is
# down. Every other answer that is not 2xx (redirects included: they are never
# followed) stops the retries.
RETRYABLE_STATUSES = frozenset({408, 429})


class CallbackStatus(StrEnum):
    """The ``callback.state`` a job shows."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Verdict(StrEnum):
    """What one attempt's answer means."""

    DELIVERED = "delivered"
    RETRY = "retry"
    STOP = "stop"


def verdict(status: int | None) -> Verdict:
    """The meaning of an attempt's HTTP status; None is no answer (time-out, connection lost)."""
    if status is None or status in RETRYABLE_STATUSES or 500 <= status <= 599:
        return Verdict.RETRY
    if 200 <= status <= 299:
        return Verdict.DELIVERED
    return Verdict.STOP


def max_attempts(schedule: Sequence[float]) -> int:
    """Attempts in all: the first, made when the job ends, and one per pause of the schedule."""
    return len(schedule) + 1


@dataclass(frozen=True)
class Next:
    """Where a callback goes after an attempt: its state and, while pending, the pause (s)."""

    state: CallbackStatus
    delay: float | None = None


def next_step(status: int | None, *, attempt: int, schedule: Sequence[float]) -> Next:
    """After attempt number ``attempt`` (1-based) answered ``status``: delivered, failed, or
    pending again after the schedule's ``attempt``-th pause."""
    outcome = verdict(status)
    if outcome is Verdict.DELIVERED:
        return Next(CallbackStatus.DELIVERED)
    if outcome is Verdict.RETRY and attempt < max_attempts(schedule):
        return Next(CallbackStatus.PENDING, float(schedule[attempt - 1]))
    return Next(CallbackStatus.FAILED)


def message_id(job_id: str) -> str:
    """The ``webhook-id`` of a job's callback: the same on every attempt, so receivers can
    drop a repeat."""
    return f"msg_{job_id}"


def payload(record: JobRecord) -> bytes:
    """The job's JSON exactly as the API shows it (through its schema), as UTF-8 bytes."""
    body = dump_job(record.to_json())
    # ASCII only: the bytes sent and the text signed are then the same characters.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signed_headers(
    secret: str, *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with ``secret`` (whsec_ + base64)."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode("ascii"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


@dataclass(frozen=True)
class Claim:
    """One attempt a worker holds: the job, which attempt it is (1-based), and where to send."""

    job_id: str
    attempt: int
    url: str


@dataclass(frozen=True)
class Due:
    """Callbacks due now (oldest first, not claimed), and the ms until the next one that
    is not (None if there is none)."""

    ids: list[str]
    next_in_ms: int | None


# KEYS: the due set. ARGV: most ids to return. The ids due now by Redis' clock, oldest
# first, and how long until the first entry due later; reading them claims nothing.
_DUE = NOW_MS_LUA + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local later = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now), '+inf',
                         'WITHSCORES', 'LIMIT', 0, 1)
local wait = -1
if later[2] then wait = tonumber(later[2]) - now end
return {ids, wait}
"""

# KEYS: the due set, the job hash. ARGV: job id, lease (ms), attempts allowed.
# Returns {1, attempt, url} (claimed: the entry is due again only after the lease, so no
# other worker takes it meanwhile), {0} (not due: another worker claimed it first), {-1}
# (dropped: the job is gone or its callback settled) or {-2} (failed: the last attempt's
# worker died before recording it). The attempt is counted before it is made, so a worker
# that dies mid-send still uses one up, and the count is the fence of finish.
_CLAIM = NOW_MS_LUA + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return {0} end
local job = redis.call('HMGET', KEYS[2], 'callback_url', 'callback_state', 'callback_attempts')
if not job[1] or job[2] ~= 'pending' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {-1}
end
local attempt = tonumber(job[3] or '0') + 1
if attempt > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[2], 'callback_state', 'failed')
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {-2}
end
redis.call('HSET', KEYS[2], 'callback_attempts', attempt)
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return {1, attempt, job[1]}
"""

# KEYS: the due set, the job hash. ARGV: job id, the claimed attempt, new state, last HTTP
# status ('' for none), pause before the next attempt (ms, when pending). Applies only
# while the claim stands (state pending, attempts unchanged): a worker whose lease ran
# out and was overtaken cannot overwrite the newer attempt. Returns 1 if applied, else 0.
_FINISH = NOW_MS_LUA + """
local job = redis.call('HMGET', KEYS[2], 'callback_state', 'callback_attempts')
if job[1] ~= 'pending' or job[2] ~= ARGV[2] then return 0 end
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[2], 'callback_last_status')
else
  redis.call('HSET', KEYS[2], 'callback_last_status', ARGV[4])
end
if ARGV[3] == 'pending' then
  redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[5])), ARGV[1])
else
  redis.call('HSET', KEYS[2], 'callback_state', ARGV[3])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""


class Deliveries:
    """The due set of callbacks in Redis, claimed and settled atomically."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._due = client.register_script(_DUE)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)

    def due(self, limit: int) -> Due:
        """Up to ``limit`` job ids whose callback is due now, and when the next one is."""
        ids, wait = self._due(keys=[keys.webhooks_due()], args=[max(limit, 0)])
        return Due([text(i) for i in ids], None if int(wait) < 0 else int(wait))

    def claim(self, job_id: str, *, lease_seconds: float, max_attempts: int) -> Claim | None:
        """Take the job's due callback for one attempt, or None if it is not ours to send."""
        answer = self._claim(
            keys=[keys.webhooks_due(), keys.job(job_id)],
            args=[job_id, int(lease_seconds * 1000), max_attempts],
        )
        if int(answer[0]) != 1:
            return None
        return Claim(job_id=job_id, attempt=int(answer[1]), url=text(answer[2]))

    def finish(
        self,
        claim: Claim,
        step: Next,
        *,
        last_status: int | None,
    ) -> bool:
        """Record an attempt's outcome; False if the claim no longer stood."""
        delay_ms = 0 if step.delay is None else int(step.delay * 1000)
        done = self._finish(
            keys=[keys.webhooks_due(), keys.job(claim.job_id)],
            args=[
                claim.job_id,
                claim.attempt,
                step.state.value,
                "" if last_status is None else str(last_status),
                delay_ms,
            ],
        )
        return int(done) == 1
