"""The Redis job store: one hash per job, written atomically, read by the API.

The store knows nothing of EM or Celery; it stores the typed contract of
:mod:`shared.contract` as JSON and gives it back typed. Status changes go through
one Lua script so that a final status (succeeded, failed, cancelled) is never
overwritten, whichever process gets there second, and a job is counted in the
metrics by the same call that makes it final.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import redis

from shared import keys, metrics
from shared.contract import JobError, JobResult, JobSpec, Part
from shared.status import FINAL_STATUSES, RUNNING_STATUSES, JobStatus

# Redis' clock in milliseconds, inside a script (scripts replicate their effects, so
# reading TIME is allowed). Every expiry of a job comes from this one clock.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: job hash, unfinished set. ARGV: TTL in ms, most unfinished jobs allowed (0: no
# limit), the job id, then field/value pairs. The limit is checked and the job stored in
# one step, so concurrent submissions cannot overshoot it. The job's absolute expiry is
# stored in the hash; every other key of the job expires at the same instant.
_CREATE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then return 0 end
local expires = string.format('%d', now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'created_ms', string.format('%d', now), 'expires_at', expires,
           unpack(ARGV, 4))
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[2], now, ARGV[3])
return 1
"""

# KEYS: job hash, unfinished set, metric counters, job-duration histogram. ARGV: new
# status, JSON list of allowed current statuses, 1 if the new status is final, the job id,
# the counter field of this final status, JSON [[bound, label], ...] of the histogram's
# buckets, then field/value pairs. A final transition succeeds once, so the job is
# counted here, in the same call: no crash can separate the two.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local allowed = false
for _, status in ipairs(cjson.decode(ARGV[2])) do
  if status == current then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 7))
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  local created = tonumber(redis.call('HGET', KEYS[1], 'created_ms') or '')
  if created then
""" + _NOW_MS + """
    local seconds = math.max(0, now - created) / 1000
    local field = 'le:+Inf'
    for _, bucket in ipairs(cjson.decode(ARGV[6])) do
      if seconds <= bucket[1] then field = 'le:' .. bucket[2]; break end
    end
    redis.call('HINCRBY', KEYS[4], field, 1)
    redis.call('HINCRBY', KEYS[4], 'count', 1)
    redis.call('HINCRBYFLOAT', KEYS[4], 'sum', string.format('%.3f', seconds))
  end
end
return 1
"""

# KEYS: a side hash of the job (draws or parts), the job hash. ARGV: field, value,
# draws to add to the progress, the job-hash field holding how many entries make
# the side hash complete. HSETNX makes a redelivered write a no-op, so progress is
# counted once. The side hash expires at the job's own instant. Returns -1 (no job),
# 0 (written before), 1 (written), 2 (written, and it completed the set: exactly one
# writer sees 2).
_SAVE_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[2], 'draws_fetched', ARGV[3]) end
local expires = redis.call('HGET', KEYS[2], 'expires_at')
if expires then redis.call('PEXPIREAT', KEYS[1], expires) end
local needed = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
if redis.call('HLEN', KEYS[1]) == needed then return 2 end
return 1
"""


class Saved(IntEnum):
    """What a write-once save did."""

    NO_JOB = -1
    ALREADY = 0
    WRITTEN = 1
    COMPLETED = 2


def connect(url: str, *, timeout: float) -> redis.Redis:
    """A Redis client whose connects and reads give up after ``timeout`` seconds, so a
    stopped or frozen Redis is an error at once rather than a hang."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
    )


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-25T10:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobNotFound(LookupError):
    """No record exists for the job id (never created, or expired)."""


class QueueFull(RuntimeError):
    """As many jobs as allowed are unfinished; the new one was not stored."""


@dataclass(frozen=True)
class JobRecord:
    """One job as stored, decoded from its hash."""

    id: str
    status: JobStatus
    spec: JobSpec
    draws_total: int
    draws_fetched: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    counts: list[list[int]] | None
    result: JobResult | None
    error: JobError | None
    owner: str | None
    batches_total: int
    # Redis time (ms since the epoch) at which every key of the job expires.
    expires_at_ms: int

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> JobRecord:
        """Decode the strings Redis returns."""

        def loads(name: str) -> Any:
            value = raw.get(name)
            return None if value is None else json.loads(value)

        result, error = loads("result"), loads("error")
        return cls(
            id=raw["id"],
            status=JobStatus(raw["status"]),
            spec=JobSpec.from_json(loads("spec")),
            draws_total=int(raw.get("draws_total", 0)),
            draws_fetched=int(raw.get("draws_fetched", 0)),
            created_at=raw["created_at"],
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            counts=loads("counts"),
            result=None if result is None else JobResult.from_json(result),
            error=None if error is None else JobError.from_json(error),
            owner=raw.get("owner"),
            batches_total=int(raw.get("batches_total", 0)),
            expires_at_ms=int(raw.get("expires_at", 0)),
        )


class JobStore:
    """Reads and writes job records in Redis under the keys of :mod:`shared.keys`."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: int):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._create = client.register_script(_CREATE)
        self._transition = client.register_script(_TRANSITION)
        self._save_once = client.register_script(_SAVE_ONCE)

    def create(
        self,
        job_id: str,
        *,
        spec: JobSpec,
        draws_total: int,
        counts: list[list[int]] | None = None,
        owner: str | None = None,
        batches_total: int = 0,
        max_unfinished: int = 0,
    ) -> None:
        """Store a new queued job; inline data arrives complete, so it counts as fetched.

        ``batches_total`` is how many fetch batches complete the draws, and the number of
        methods in ``spec`` how many parts complete the result. With ``max_unfinished``
        above 0, :class:`QueueFull` is raised (and nothing stored) when that many jobs are
        already unfinished.
        """
        fields: dict[str, str] = {
            "id": job_id,
            "status": JobStatus.QUEUED.value,
            "spec": json.dumps(spec.to_json()),
            "draws_total": str(draws_total),
            "draws_fetched": str(draws_total if counts is not None else 0),
            "created_at": utc_now(),
            "batches_total": str(batches_total),
            "parts_total": str(len(spec.methods)),
        }
        if counts is not None:
            fields["counts"] = json.dumps(counts)
        if owner is not None:
            fields["owner"] = owner
        args = [str(self.ttl_seconds * 1000), str(max_unfinished), job_id]
        for name, value in fields.items():
            args += [name, value]
        if not self._create(keys=[keys.job(job_id), keys.unfinished_jobs()], args=args):
            raise QueueFull(max_unfinished)

    def delete(self, job_id: str) -> None:
        """Forget a job that was never accepted (its submission failed)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.job(job_id), keys.job_draws(job_id), keys.job_parts(job_id))
            pipe.zrem(keys.unfinished_jobs(), job_id)
            pipe.execute()

    def get(self, job_id: str) -> JobRecord:
        """The job's record; :class:`JobNotFound` if there is none."""
        raw = self.client.hgetall(keys.job(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return JobRecord.from_hash(_decode(raw))

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status alone, or None if the job does not exist."""
        value = self.client.hget(keys.job(job_id), "status")
        return None if value is None else JobStatus(_text(value))

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        allowed_from: Iterable[JobStatus],
        code: str | None = None,
        **fields: Any,
    ) -> bool:
        """Set the status (and fields) only if the current status is in ``allowed_from``.

        Returns False when the job is missing or its status did not allow it. Dict and
        list field values are stored as JSON. A final status is counted in the metrics
        under ``code`` (the error code of a failure).
        """
        args: list[str] = [
            to.value,
            json.dumps([s.value for s in allowed_from]),
            "1" if to in FINAL_STATUSES else "0",
            job_id,
            metrics.finished_field(to.value, code or metrics.NO_CODE),
            _JOB_BUCKETS,
        ]
        for name, value in fields.items():
            args += [name, value if isinstance(value, str) else json.dumps(value)]
        done = self._transition(
            keys=[
                keys.job(job_id),
                keys.unfinished_jobs(),
                keys.metric_counters(),
                keys.metric_histogram(metrics.JOB_DURATION),
            ],
            args=args,
        )
        return done == 1

    def start_fetching(self, job_id: str) -> bool:
        """queued -> fetching, stamping ``started_at`` once."""
        return self.transition(
            job_id, JobStatus.FETCHING, allowed_from=[JobStatus.QUEUED], started_at=utc_now()
        )

    def start_fitting(self, job_id: str, counts: list[list[int]]) -> bool:
        """queued or fetching -> fitting, storing the aggregated counts the fits use."""
        record = self.client.hget(keys.job(job_id), "started_at")
        fields: dict[str, Any] = {"counts": counts}
        if record is None:
            fields["started_at"] = utc_now()
        return self.transition(
            job_id,
            JobStatus.FITTING,
            allowed_from=[JobStatus.QUEUED, JobStatus.FETCHING, JobStatus.FITTING],
            **fields,
        )

    def succeed(self, job_id: str, result: JobResult) -> bool:
        """fitting -> succeeded with the result; a cancelled or finished job is left alone."""
        return self.transition(
            job_id,
            JobStatus.SUCCEEDED,
            allowed_from=[JobStatus.FITTING],
            result=result.to_json(),
            finished_at=utc_now(),
        )

    def fail(self, job_id: str, error: JobError) -> bool:
        """Any running status -> failed with an error; final statuses are left alone."""
        return self.transition(
            job_id,
            JobStatus.FAILED,
            allowed_from=RUNNING_STATUSES,
            code=error.code,
            error=error.to_json(),
            finished_at=utc_now(),
        )

    def cancel(self, job_id: str) -> bool:
        """Any running status -> cancelled; False if the job already finished."""
        return self.transition(
            job_id, JobStatus.CANCELLED, allowed_from=RUNNING_STATUSES, finished_at=utc_now()
        )

    def record_batch(self, job_id: str, batch: int, pairs: Sequence[Sequence[int]]) -> Saved:
        """Keep a batch's ``(heads, trials)`` pairs; writing a batch again is a no-op."""
        return Saved(self._save_once(
            keys=[keys.job_draws(job_id), keys.job(job_id)],
            args=[str(batch), json.dumps([list(p) for p in pairs]), str(len(pairs)),
                  "batches_total"],
        ))

    def batches(self, job_id: str) -> dict[int, list[list[int]]]:
        """The batches fetched so far, by index."""
        raw = self.client.hgetall(keys.job_draws(job_id))
        return {int(_text(k)): json.loads(v) for k, v in raw.items()}

    def has_batch(self, job_id: str, batch: int) -> bool:
        """True once the batch is recorded (without reading every batch)."""
        return bool(self.client.hexists(keys.job_draws(job_id), str(batch)))

    def batch_count(self, job_id: str) -> int:
        """How many batches are recorded."""
        return int(self.client.hlen(keys.job_draws(job_id)))

    def save_part(self, job_id: str, part: Part) -> Saved:
        """Keep one method's fit; a redelivered fit cannot replace the first one."""
        return Saved(self._save_once(
            keys=[keys.job_parts(job_id), keys.job(job_id)],
            args=[part.method, json.dumps(part.to_json()), "0", "parts_total"],
        ))

    def parts(self, job_id: str) -> dict[str, Part]:
        """The methods' fits saved so far, by method."""
        raw = self.client.hgetall(keys.job_parts(job_id))
        return {_text(k): Part.from_json(json.loads(v)) for k, v in raw.items()}

    def cached_plot(self, job_id: str, fmt: str) -> bytes | None:
        """A plot drawn before, or None."""
        return self.client.get(keys.job_plot(job_id, fmt))

    def keep_plot(self, record: JobRecord, fmt: str, image: bytes) -> bytes:
        """Cache a plot until the job expires; when two requests draw at once, both get the
        bytes stored first."""
        key = keys.job_plot(record.id, fmt)
        # A job stored before expiries were absolute has none: give the plot a full TTL.
        expiry = (
            {"pxat": record.expires_at_ms} if record.expires_at_ms else {"ex": self.ttl_seconds}
        )
        if self.client.set(key, image, nx=True, **expiry):
            return image
        return self.client.get(key) or image

    def backlog(self) -> int:
        """How many jobs are queued or running, read only (for polls; may count a few
        expired ids until a submission prunes them)."""
        return int(self.client.zcard(keys.unfinished_jobs()))


# The job-duration histogram's buckets as the transition script reads them.
_JOB_BUCKETS = json.dumps(
    [[bound, metrics.bucket_label(bound)] for bound in metrics.BUCKETS[metrics.JOB_DURATION]]
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
