"""The Redis job store: one hash per job, written atomically, read by the API.

The store knows nothing of EM or Celery; it stores the typed contract of
:mod:`shared.contract` as JSON and gives it back typed. Status changes go through
one Lua script so that a final status (succeeded, failed, cancelled) is never
overwritten, whichever process gets there second, and a job is counted in the
metrics by the same call that makes it final.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import redis
from redis.connection import parse_url
from redis.sentinel import Sentinel

from shared import keys, metrics
from shared.config import Settings
from shared.contract import JobError, JobResult, JobSpec, Part
from shared.replication import Replication
from shared.replies import text
from shared.status import FINAL_STATUSES, RUNNING_STATUSES, JobStatus

# Redis' clock in milliseconds as the Lua variable ``now``, to begin a script with
# (scripts replicate their effects, so reading TIME is allowed). Every expiry of a job,
# and every due time of its callback, comes from this one clock.
NOW_MS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: job hash, unfinished set, the owner's job index, the idempotency key's hash (or
# an unused key), the job's event stream. ARGV: TTL in ms, most unfinished jobs allowed
# (0: no limit), the job id, the request's fingerprint ('' without an Idempotency-Key),
# then field/value pairs.
# Returns {1} (created), {0} (too many unfinished jobs), {2, id} (the key made job id for
# the same request: a replay, never refused) or {3} (the key was used for another request).
# The limit is checked and the job stored in one step, so concurrent submissions cannot
# overshoot it, and two requests with one key make one job. The job's absolute expiry is
# stored in the hash; every other key of the job expires at the same instant.
_CREATE = NOW_MS_LUA + """
local ttl = tonumber(ARGV[1])
if ARGV[4] ~= '' then
  local seen = redis.call('HMGET', KEYS[4], 'fingerprint', 'job')
  if seen[1] then
    if seen[1] == ARGV[4] then return {2, seen[2]} end
    return {3}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then return {0} end
local expires = string.format('%d', now + ttl)
redis.call('HSET', KEYS[1], 'created_ms', string.format('%d', now), 'expires_at', expires,
           unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
redis.call('ZADD', KEYS[3], now, ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[4], 'fingerprint', ARGV[4], 'job', ARGV[3])
  redis.call('PEXPIREAT', KEYS[4], expires)
  redis.call('HSET', KEYS[1], 'idempotency_key', KEYS[4])
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'status', 'status', 'queued')
redis.call('PEXPIREAT', KEYS[5], expires)
return {1}
"""

# KEYS: job hash, unfinished set, the owner's job index. Removes every key of the job;
# the job hash names its idempotency key, and its side keys are passed in ARGV.
_DELETE = """
local key = redis.call('HGET', KEYS[1], 'idempotency_key')
if key then redis.call('DEL', key) end
local existed = redis.call('DEL', KEYS[1], unpack(ARGV, 2))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return existed
"""

# KEYS: job hash, unfinished set, metric counters, job-duration histogram, the job's event
# stream, the due webhooks. ARGV: new status, JSON list of allowed current statuses, 1 if
# the new status is final, the job id, the counter field of this final status, JSON
# [[bound, label], ...] of the histogram's buckets, then field/value pairs. A final
# transition succeeds once, so the job is counted here, in the same call: no crash can
# separate the two; and a job with a callback has its delivery made due here, once.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local allowed = false
for _, status in ipairs(cjson.decode(ARGV[2])) do
  if status == current then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 7))
""" + NOW_MS_LUA + """
local expires = redis.call('HGET', KEYS[1], 'expires_at')
if current ~= ARGV[1] then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'status', 'status', ARGV[1])
  if expires then redis.call('PEXPIREAT', KEYS[5], expires) end
end
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  local created = tonumber(redis.call('HGET', KEYS[1], 'created_ms') or '')
  if created then
    local seconds = math.max(0, now - created) / 1000
    local field = 'le:+Inf'
    for _, bucket in ipairs(cjson.decode(ARGV[6])) do
      if seconds <= bucket[1] then field = 'le:' .. bucket[2]; break end
    end
    redis.call('HINCRBY', KEYS[4], field, 1)
    redis.call('HINCRBY', KEYS[4], 'count', 1)
    redis.call('HINCRBYFLOAT', KEYS[4], 'sum', string.format('%.3f', seconds))
  end
  if redis.call('HEXISTS', KEYS[1], 'callback_url') == 1 then
    redis.call('HSET', KEYS[1], 'callback_state', 'pending', 'callback_attempts', 0)
    redis.call('ZADD', KEYS[6], now, ARGV[4])
  end
end
return 1
"""

# KEYS: a side hash of the job (draws or parts), the job hash, the job's event stream.
# ARGV: field, value, draws to add to the progress, the job-hash field holding how many
# entries make the side hash complete. HSETNX makes a redelivered write a no-op, so
# progress is counted (and announced) once. The side hash expires at the job's own
# instant. Returns -1 (no job), 0 (written before), 1 (written), 2 (written, and it
# completed the set: exactly one writer sees 2).
_SAVE_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local expires = redis.call('HGET', KEYS[2], 'expires_at')
if tonumber(ARGV[3]) > 0 then
  local fetched = redis.call('HINCRBY', KEYS[2], 'draws_fetched', ARGV[3])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'progress',
             'draws_fetched', fetched, 'draws_total', redis.call('HGET', KEYS[2], 'draws_total'))
  if expires then redis.call('PEXPIREAT', KEYS[3], expires) end
end
if expires then redis.call('PEXPIREAT', KEYS[1], expires) end
local needed = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
if redis.call('HLEN', KEYS[1]) == needed then return 2 end
return 1
"""


# Lua's test that the job hash KEYS[2] is unfinished: its status is one of the JSON list
# ARGV[1] (the running statuses). Replicate work for a job that ended is not recorded.
_RUNNING_LUA = """
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return -1 end
local running = false
for _, s in ipairs(cjson.decode(ARGV[1])) do
  if s == status then running = true end
end
if not running then return -1 end
local expires = redis.call('HGET', KEYS[2], 'expires_at')
"""

# KEYS: the job's analyses hash, the job hash, the job's event stream. ARGV: running
# statuses, the stage's setup field, its JSON, analysis, stage, replicates of the stage.
# Stores a stage's setup once and makes it the job's replicate progress, announced as a
# progress event; so a stage starts (and its count restarts at 0) exactly once.
# Returns -1 (no job, or it ended), 0 (started before), 1 (started now).
_START_STAGE = _RUNNING_LUA + """
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'replicates_stage_key', ARGV[2], 'replicates_analysis', ARGV[4],
           'replicates_stage', ARGV[5], 'replicates_done', 0, 'replicates_total', ARGV[6])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'progress',
           'draws_fetched', redis.call('HGET', KEYS[2], 'draws_fetched') or 0,
           'draws_total', redis.call('HGET', KEYS[2], 'draws_total') or 0,
           'replicates_analysis', ARGV[4], 'replicates_stage', ARGV[5],
           'replicates_done', 0, 'replicates_total', ARGV[6])
if expires then
  redis.call('PEXPIREAT', KEYS[1], expires)
  redis.call('PEXPIREAT', KEYS[3], expires)
end
return 1
"""

# KEYS: the job's replicates hash, the job hash, the job's event stream, its analyses hash.
# ARGV: running statuses, the chunk's field, its JSON, replicates in it, the field counting
# the stage's saved chunks, how many chunks complete the stage, the stage's setup field.
# HSETNX makes a redelivered chunk a no-op, and the same call counts it, so no chunk is
# counted twice. Progress events are sent at each whole percent of the stage, so that a
# stage of 10,000 one-replicate chunks does not push the job's status events out of its
# stream. Returns -1 (no job, or it ended), 0 (saved before), 1 (saved), 2 (saved, and it
# completed the stage: exactly one writer sees 2).
_SAVE_CHUNK = _RUNNING_LUA + """
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return 0 end
local saved = redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
if redis.call('HGET', KEYS[2], 'replicates_stage_key') == ARGV[7] then
  local n = tonumber(ARGV[4])
  local done = redis.call('HINCRBY', KEYS[2], 'replicates_done', n)
  local total = tonumber(redis.call('HGET', KEYS[2], 'replicates_total'))
  if done >= total or math.floor(100 * done / total) > math.floor(100 * (done - n) / total) then
    local job = redis.call('HMGET', KEYS[2], 'draws_fetched', 'draws_total',
                           'replicates_analysis', 'replicates_stage')
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'progress',
               'draws_fetched', job[1] or 0, 'draws_total', job[2] or 0,
               'replicates_analysis', job[3], 'replicates_stage', job[4],
               'replicates_done', done, 'replicates_total', total)
  end
end
if expires then
  redis.call('PEXPIREAT', KEYS[1], expires)
  redis.call('PEXPIREAT', KEYS[3], expires)
  redis.call('PEXPIREAT', KEYS[4], expires)
end
if saved == tonumber(ARGV[6]) then return 2 end
return 1
"""

# KEYS: a side hash of the job, the job hash. ARGV: field, value. Write-once, expiring at
# the job's instant. Returns -1 (no job), 0 (written before), 1 (written).
_KEEP_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local expires = redis.call('HGET', KEYS[2], 'expires_at')
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if expires then redis.call('PEXPIREAT', KEYS[1], expires) end
return 1
"""


class Saved(IntEnum):
    """What a write-once save did."""

    NO_JOB = -1
    ALREADY = 0
    WRITTEN = 1
    COMPLETED = 2


def connect(settings: Settings) -> redis.Redis:
    """The Redis client of ``settings``: connects and reads give up after ``redis_timeout``
    seconds, so a stopped or frozen Redis is an error at once rather than a hang.

    With ``redis_sentinels`` set, the client follows the master the sentinels name for
    ``redis_master`` (database and password still come from ``redis_url``): after a
    failover its next connection goes to the new master, and a demoted master's
    ReadOnlyError becomes a ConnectionError (a 503 in the API, a redelivery in a worker).
    """
    timeout = settings.redis_timeout
    options: dict[str, Any] = {
        "socket_timeout": timeout, "socket_connect_timeout": timeout, "health_check_interval": 30
    }
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    url = parse_url(settings.redis_url)
    for name in ("db", "username", "password"):
        if name in url:
            options[name] = url[name]
    sentinels = []
    for address in settings.redis_sentinels:
        host, _, port = address.rpartition(":")
        sentinels.append((host, int(port)))
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
    )
    return sentinel.master_for(settings.redis_master, redis_class=_SentinelMaster, **options)


class _SentinelMaster(redis.Redis):
    """The client of the master the sentinels name; closing it also closes its connections
    to the sentinels (redis-py's own leaves them open until garbage collection)."""

    def close(self) -> None:
        super().close()
        for client in self.connection_pool.sentinel_manager.sentinels:
            client.close()


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-25T10:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobNotFound(LookupError):
    """No record exists for the job id (never created, or expired)."""


class QueueFull(RuntimeError):
    """As many jobs as allowed are unfinished; the new one was not stored."""


class Replayed(Exception):
    """The idempotency key already made a job for the same request: ``args[0]`` is its id."""

    @property
    def job_id(self) -> str:
        """The job the first request made."""
        return self.args[0]


class IdempotencyKeyReused(ValueError):
    """The idempotency key was used before for a different request."""


@dataclass(frozen=True)
class Idempotency:
    """An ``Idempotency-Key`` (as a digest) and the fingerprint of its request."""

    key_digest: str
    fingerprint: str


_SUMMARY_FIELDS = (
    "status", "created_at", "started_at", "finished_at", "draws_fetched", "draws_total"
)


@dataclass(frozen=True)
class JobSummary:
    """What a listing shows of a job: no spec, counts or result."""

    id: str
    status: JobStatus
    created_at: str
    started_at: str | None
    finished_at: str | None
    draws_fetched: int
    draws_total: int

    @classmethod
    def from_fields(cls, job_id: str, values: Sequence[str | None]) -> JobSummary:
        """Decode the values of :data:`_SUMMARY_FIELDS`, in that order."""
        status, created, started, finished, fetched, total = values
        return cls(
            id=job_id,
            status=JobStatus(status),
            created_at=created or "",
            started_at=started,
            finished_at=finished,
            draws_fetched=int(fetched or 0),
            draws_total=int(total or 0),
        )


@dataclass(frozen=True)
class CallbackState:
    """Where a job's completion callback stands."""

    url: str
    state: str  # "pending" (until the job ends, and while retrying), "delivered", "failed"
    attempts: int
    last_status: int | None

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> CallbackState | None:
        """The callback fields of a job hash, or None for a job without a callback."""
        url = raw.get("callback_url")
        if url is None:
            return None
        last = raw.get("callback_last_status")
        return cls(
            url=url,
            state=raw.get("callback_state", "pending"),
            attempts=int(raw.get("callback_attempts", 0)),
            last_status=int(last) if last else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form shown on the job."""
        return {
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "last_status": self.last_status,
        }


@dataclass(frozen=True)
class ReplicateProgress:
    """Replicates done in the stage of an analysis that runs now: the bootstrap, or the
    components test's test of ``stage`` coins against ``stage + 1``."""

    analysis: str
    stage: int | None
    done: int
    total: int

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ReplicateProgress | None:
        """Decode the ``replicates_*`` fields of a job hash or an event; None without them."""
        analysis = fields.get("replicates_analysis")
        if analysis is None:
            return None
        stage = int(fields.get("replicates_stage") or 0)
        return cls(
            analysis=analysis,
            stage=stage or None,
            done=int(fields.get("replicates_done") or 0),
            total=int(fields.get("replicates_total") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``progress.replicates``)."""
        return {"analysis": self.analysis, "stage": self.stage, "done": self.done,
                "total": self.total}


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
    callback: CallbackState | None = None
    replicates: ReplicateProgress | None = None

    def to_json(self) -> dict[str, Any]:
        """The job as clients see it (polled, streamed, or POSTed to its callback)."""
        progress: dict[str, Any] = {
            "draws_fetched": self.draws_fetched, "draws_total": self.draws_total
        }
        if self.replicates is not None:
            progress["replicates"] = self.replicates.to_json()
        return {
            "id": self.id,
            # A StrEnum: JSON writes it as its value, and schemas take it as the enum.
            "status": self.status,
            "progress": progress,
            "spec": self.spec.to_json(),
            "result": None if self.result is None else self.result.to_json(),
            "error": None if self.error is None else self.error.to_json(),
            "callback": None if self.callback is None else self.callback.to_json(),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

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
            callback=CallbackState.from_hash(raw),
            replicates=ReplicateProgress.from_fields(raw),
        )


class JobStore:
    """Reads and writes job records in Redis under the keys of :mod:`shared.keys`."""

    def __init__(
        self, client: redis.Redis, *, ttl_seconds: int, replication: Replication | None = None
    ):
        self.client = client
        self.ttl_seconds = ttl_seconds
        # A final status is acknowledged by a replica before it counts as written.
        self.replication = replication or Replication()
        self._create = client.register_script(_CREATE)
        self._delete = client.register_script(_DELETE)
        self._transition = client.register_script(_TRANSITION)
        self._save_once = client.register_script(_SAVE_ONCE)
        self._start_stage = client.register_script(_START_STAGE)
        self._save_chunk = client.register_script(_SAVE_CHUNK)
        self._keep_once = client.register_script(_KEEP_ONCE)

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
        idempotency: Idempotency | None = None,
    ) -> str:
        """Store a new queued job and return its id; inline data arrives complete, so it
        counts as fetched.

        ``batches_total`` is how many fetch batches complete the draws, and the number of
        methods in ``spec`` how many parts complete the result. With ``max_unfinished``
        above 0, :class:`QueueFull` is raised (and nothing stored) when that many jobs are
        already unfinished. With ``idempotency``, a key already used for the same request
        returns that request's job id instead (:class:`Replayed`), and one used for another
        request raises :class:`IdempotencyKeyReused`.
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
        if spec.callback is not None:
            fields["callback_url"] = spec.callback
        idem_key = keys.idempotency(owner, idempotency.key_digest) if idempotency else ""
        args = [
            str(self.ttl_seconds * 1000),
            str(max_unfinished),
            job_id,
            idempotency.fingerprint if idempotency else "",
        ]
        for name, value in fields.items():
            args += [name, value]
        answer = self._create(
            keys=[
                keys.job(job_id),
                keys.unfinished_jobs(),
                keys.owner_jobs(owner),
                idem_key or keys.job(job_id),  # unused without a key
                keys.job_events(job_id),
            ],
            args=args,
        )
        outcome = int(answer[0])
        if outcome == 0:
            raise QueueFull(max_unfinished)
        if outcome == 2:
            raise Replayed(text(answer[1]))
        if outcome == 3:
            raise IdempotencyKeyReused(idempotency.key_digest if idempotency else "")
        return job_id

    def delete(self, job_id: str) -> bool:
        """Remove the job and every key under it; False if there was no job."""
        record_owner = self.client.hget(keys.job(job_id), "owner")
        owner = None if record_owner is None else text(record_owner)
        side = [
            keys.job_draws(job_id),
            keys.job_parts(job_id),
            keys.job_replicates(job_id),
            keys.job_analyses(job_id),
            keys.job_events(job_id),
            keys.job_plot(job_id, "png"),
            keys.job_plot(job_id, "svg"),
        ]
        existed = self._delete(
            keys=[keys.job(job_id), keys.unfinished_jobs(), keys.owner_jobs(owner)],
            args=[job_id, *side],
        )
        return bool(existed)

    def list_jobs(
        self,
        owner: str | None,
        *,
        page_size: int,
        after: tuple[int, str] | None = None,
        status: JobStatus | None = None,
        scan_limit: int = 5000,
    ) -> tuple[list[JobSummary], tuple[int, str] | None]:
        """An owner's jobs, newest first: up to ``page_size`` summaries after the cursor
        ``(created_ms, id)`` of the last one seen, and the cursor to go on from (None at
        the end). A cursor names a place in the order, not an offset, so pages stay put
        while new jobs arrive. Ids whose record expired are removed from the index as they
        are met; at most ``scan_limit`` ids are read per call, so a filter that matches
        little returns a short page and a cursor rather than scanning every job."""
        index = keys.owner_jobs(owner)
        top: str = "+inf" if after is None else str(after[0])
        page: list[JobSummary] = []
        scanned = 0
        last: tuple[int, str] | None = after
        while scanned < scan_limit:
            chunk = self.client.zrevrangebyscore(
                index, top, "-inf", start=0, num=page_size + 50, withscores=True
            )
            entries = [(int(score), text(member)) for member, score in chunk]
            if after is not None:
                # Ties in created_ms come in reverse order of id; skip those already seen.
                entries = [e for e in entries if e[0] < after[0] or e[1] < after[1]]
            if not entries:
                return page, None
            with self.client.pipeline(transaction=False) as pipe:
                for _, job_id in entries:
                    pipe.hmget(keys.job(job_id), *_SUMMARY_FIELDS)
                rows = pipe.execute()
            gone = []
            for (created, job_id), row in zip(entries, rows, strict=True):
                scanned += 1
                last = (created, job_id)
                if row[0] is None:
                    gone.append(job_id)
                    continue
                summary = JobSummary.from_fields(job_id, [_maybe_text(v) for v in row])
                if status is None or summary.status is status:
                    page.append(summary)
                if len(page) == page_size:
                    break
            if gone:
                self.client.zrem(index, *gone)
            if len(page) == page_size:
                return page, last
            after, top = last, str(last[0])
        return page, last

    def get(self, job_id: str) -> JobRecord:
        """The job's record; :class:`JobNotFound` if there is none."""
        raw = self.client.hgetall(keys.job(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return JobRecord.from_hash(_decode(raw))

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status alone, or None if the job does not exist."""
        value = self.client.hget(keys.job(job_id), "status")
        return None if value is None else JobStatus(text(value))

    def status_and_expiry(self, job_id: str) -> tuple[JobStatus | None, int]:
        """The job's status (None if it does not exist) and the instant it expires at (ms):
        the pair names one job, even if a deleted job's id were used again."""
        status, expires = self.client.hmget(keys.job(job_id), "status", "expires_at")
        return (None if status is None else JobStatus(text(status)), int(expires or 0))

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
        script_keys = [
            keys.job(job_id),
            keys.unfinished_jobs(),
            keys.metric_counters(),
            keys.metric_histogram(metrics.JOB_DURATION),
            keys.job_events(job_id),
            keys.webhooks_due(),
        ]
        if to not in FINAL_STATUSES:
            return self._transition(keys=script_keys, args=args) == 1
        done = self.replication.write(
            self.client, lambda c: self._transition(keys=script_keys, args=args, client=c)
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
            keys=[keys.job_draws(job_id), keys.job(job_id), keys.job_events(job_id)],
            args=[str(batch), json.dumps([list(p) for p in pairs]), str(len(pairs)),
                  "batches_total"],
        ))

    def batches(self, job_id: str) -> dict[int, list[list[int]]]:
        """The batches fetched so far, by index."""
        raw = self.client.hgetall(keys.job_draws(job_id))
        return {int(text(k)): json.loads(v) for k, v in raw.items()}

    def has_batch(self, job_id: str, batch: int) -> bool:
        """True once the batch is recorded (without reading every batch)."""
        return bool(self.client.hexists(keys.job_draws(job_id), str(batch)))

    def fetched_batches(self, job_id: str) -> set[int]:
        """The indices of the batches recorded (without reading their draws)."""
        return {int(text(k)) for k in self.client.hkeys(keys.job_draws(job_id))}

    def fitted_methods(self, job_id: str) -> set[str]:
        """The methods whose part is saved (without reading the parts)."""
        return {text(k) for k in self.client.hkeys(keys.job_parts(job_id))}

    def batch_count(self, job_id: str) -> int:
        """How many batches are recorded."""
        return int(self.client.hlen(keys.job_draws(job_id)))

    def save_part(self, job_id: str, part: Part) -> Saved:
        """Keep one method's fit; a redelivered fit cannot replace the first one."""
        return Saved(self._save_once(
            keys=[keys.job_parts(job_id), keys.job(job_id), keys.job_events(job_id)],
            args=[part.method, json.dumps(part.to_json()), "0", "parts_total"],
        ))

    def parts(self, job_id: str) -> dict[str, Part]:
        """The methods' fits saved so far, by method."""
        raw = self.client.hgetall(keys.job_parts(job_id))
        return {text(k): Part.from_json(json.loads(v)) for k, v in raw.items()}

    # --- analyses whose replicates fan out: one stage at a time, chunks saved once ---------

    def start_stage(
        self, job_id: str, analysis: str, stage: int, setup: Mapping[str, Any], *, replicates: int
    ) -> Saved:
        """Keep a stage's setup (what its chunks need) once, and make the stage the job's
        replicate progress: WRITTEN if this call started it, ALREADY if it had started,
        NO_JOB if the job is gone or ended."""
        answer = self._start_stage(
            keys=[keys.job_analyses(job_id), keys.job(job_id), keys.job_events(job_id)],
            args=[_RUNNING_JSON, _stage_field("setup", analysis, stage), json.dumps(setup),
                  analysis, str(stage), str(replicates)],
        )
        return Saved(answer)

    def stage_setup(self, job_id: str, analysis: str, stage: int) -> dict[str, Any] | None:
        """A stage's setup, or None before it started."""
        raw = self.client.hget(keys.job_analyses(job_id), _stage_field("setup", analysis, stage))
        return None if raw is None else json.loads(raw)

    def save_chunk(
        self,
        job_id: str,
        analysis: str,
        stage: int,
        chunk: int,
        replicates: Sequence[Mapping[str, Any]],
        *,
        chunks: int,
    ) -> Saved:
        """Keep one chunk's replicates once, counting them in the job's progress in the same
        step; COMPLETED for the one save that completes the stage's ``chunks``."""
        answer = self._save_chunk(
            keys=[keys.job_replicates(job_id), keys.job(job_id), keys.job_events(job_id),
                  keys.job_analyses(job_id)],
            args=[_RUNNING_JSON, _chunk_field(analysis, stage, chunk), json.dumps(replicates),
                  str(len(replicates)), _stage_field("chunks", analysis, stage), str(chunks),
                  _stage_field("setup", analysis, stage)],
        )
        return Saved(answer)

    def has_chunk(self, job_id: str, analysis: str, stage: int, chunk: int) -> bool:
        """True once the chunk is saved."""
        field = _chunk_field(analysis, stage, chunk)
        return bool(self.client.hexists(keys.job_replicates(job_id), field))

    def chunks_saved(self, job_id: str, analysis: str, stage: int) -> int:
        """How many of a stage's chunks are saved (counted as they were saved)."""
        field = _stage_field("chunks", analysis, stage)
        return int(self.client.hget(keys.job_analyses(job_id), field) or 0)

    def saved_chunks(self, job_id: str, analysis: str, stage: int) -> set[int]:
        """The indices of a stage's saved chunks."""
        prefix = _chunk_field(analysis, stage, "")
        names = (text(name) for name in self.client.hkeys(keys.job_replicates(job_id)))
        return {int(name[len(prefix):]) for name in names if name.startswith(prefix)}

    def stage_replicates(self, job_id: str, analysis: str, stage: int) -> list[dict[str, Any]]:
        """Every replicate of a stage's saved chunks, in no particular order."""
        prefix = _chunk_field(analysis, stage, "")
        found: list[dict[str, Any]] = []
        for name, value in self.client.hscan_iter(keys.job_replicates(job_id), f"{prefix}*"):
            if text(name)[len(prefix):].isdigit():
                found += json.loads(value)
        return found

    def keep_outcome(self, job_id: str, name: str, value: Any) -> Saved:
        """Keep an analysis' outcome (a stage's test, the test's result) once."""
        return Saved(self._keep_once(
            keys=[keys.job_analyses(job_id), keys.job(job_id)],
            args=[f"outcome:{name}", json.dumps(value)],
        ))

    def outcome(self, job_id: str, name: str) -> Any | None:
        """An outcome kept by :meth:`keep_outcome`, or None."""
        raw = self.client.hget(keys.job_analyses(job_id), f"outcome:{name}")
        return None if raw is None else json.loads(raw)

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


_RUNNING_JSON = json.dumps(sorted(status.value for status in RUNNING_STATUSES))


def _stage_field(kind: str, analysis: str, stage: int) -> str:
    return f"{kind}:{analysis}:{stage}"


def _chunk_field(analysis: str, stage: int, chunk: int | str) -> str:
    return f"{analysis}:{stage}:{chunk}"


# The job-duration histogram's buckets as the transition script reads them.
_JOB_BUCKETS = json.dumps(
    [[bound, metrics.bucket_label(bound)] for bound in metrics.BUCKETS[metrics.JOB_DURATION]]
)


def _maybe_text(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def _decode(raw: dict) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}
