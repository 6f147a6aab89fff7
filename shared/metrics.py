"""Service metrics kept in Redis, so every API process and worker adds to the same figures.

Writers increment hash fields (HINCRBY, HINCRBYFLOAT) under keys of :mod:`shared.keys`;
:class:`RedisCollector` reads them when Prometheus scrapes, so a scrape answered by any
gunicorn process shows whole counts rather than that one process's share.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shared import keys, logs
from shared.status import JobStatus
from shared.store import JobNotFound, JobRecord, JobStore

log = logging.getLogger(__name__)

JOB_DURATION = "job_duration_seconds"
FETCH_DURATION = "fetch_duration_seconds"
# Upper bounds (seconds) of each histogram's buckets; +Inf is implied.
BUCKETS: dict[str, tuple[float, ...]] = {
    JOB_DURATION: (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
    FETCH_DURATION: (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
}
_HELP = {
    JOB_DURATION: "Seconds from a job's submission to its final status.",
    FETCH_DURATION: "Seconds one fetch task took to get its batch of draws from the source.",
}
SUBMITTED = "jobs_submitted_total"
_FINISHED = "jobs_finished_total"
QUEUES = ("io", "cpu")
FETCH_TASK = "emcoins.fetch_batch"
NO_CODE = "none"


def _finished_field(status: str, code: str) -> str:
    return f"{_FINISHED}|{status}|{code}"


def bucket_field(name: str, value: float) -> str:
    """The hash field of the one bucket a value falls in: ``le:<bound>`` or ``le:+Inf``."""
    for bound in BUCKETS[name]:
        if value <= bound:
            return f"le:{bound:g}"
    return "le:+Inf"


class Metrics:
    """Records events in Redis; a failed write is logged and never fails the job."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: int = 24 * 3600):
        self.client = client
        self.ttl_seconds = ttl_seconds

    def job_submitted(self) -> None:
        """One more job accepted."""
        self._safely(lambda: self.client.hincrby(keys.metric_counters(), SUBMITTED, 1))

    def observe(self, name: str, value: float) -> None:
        """Add one observation to histogram ``name``."""

        def write() -> None:
            key = keys.metric_histogram(name)
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, bucket_field(name, value), 1)
                pipe.hincrby(key, "count", 1)
                pipe.hincrbyfloat(key, "sum", value)
                pipe.execute()

        self._safely(write)

    def job_finished(self, record: JobRecord) -> bool:
        """Count a job in a final status once, whichever process sees it first."""
        if not record.status.is_final:
            return False

        def write() -> bool:
            # SET NX: the API (cancel) and several tasks may all see the same final job.
            first = self.client.set(
                keys.job_counted(record.id), 1, nx=True, ex=self.ttl_seconds
            )
            if not first:
                return False
            code = (record.error or {}).get("code") or NO_CODE
            self.client.hincrby(
                keys.metric_counters(), _finished_field(record.status.value, code), 1
            )
            duration = job_seconds(record)
            if duration is not None:
                self.observe(JOB_DURATION, duration)
            return True

        return bool(self._safely(write))

    def job_finished_by_id(self, store: JobStore, job_id: str) -> bool:
        """:meth:`job_finished` for a job read from the store; False if it is gone."""
        # Most tasks leave their job running: one HGET settles that before reading it all.
        status = self._safely(lambda: store.status(job_id))
        if status is None or not status.is_final:
            return False
        try:
            record = self._safely(lambda: store.get(job_id))
        except JobNotFound:
            return False
        return record is not None and self.job_finished(record)

    def _safely(self, write):
        try:
            return write()
        except redis.RedisError as exc:
            log.warning("metrics not recorded: %s: %s", type(exc).__name__, exc)
            return None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def job_seconds(record: JobRecord) -> float | None:
    """Seconds from creation to the final status, or None if either time is missing."""
    if not record.finished_at or not record.created_at:
        return None
    elapsed = _parse_time(record.finished_at) - _parse_time(record.created_at)
    return max(0.0, elapsed.total_seconds())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def cumulative_buckets(name: str, raw: dict[str, str]) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``(le, count)`` pairs from per-bucket counts."""
    running = 0.0
    pairs = []
    for bound in (*BUCKETS[name], math.inf):
        le = "+Inf" if bound == math.inf else f"{bound:g}"
        running += float(raw.get(f"le:{le}", 0))
        pairs.append((le, running))
    return pairs


class RedisCollector(Collector):
    """Exposes the Redis-held figures and the Celery queues' lengths at scrape time."""

    def __init__(self, client: redis.Redis, *, broker: redis.Redis | None = None,
                 queues: Sequence[str] = QUEUES):
        self.client = client
        self.broker = broker or client
        self.queues = tuple(queues)

    def collect(self) -> Iterator[Metric]:
        """Read every figure in one round trip per Redis and yield the metric families."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.metric_counters())
            for name in BUCKETS:
                pipe.hgetall(keys.metric_histogram(name))
            counters, *histograms = pipe.execute()
        with self.broker.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.llen(queue)
            depths = pipe.execute()
        counters = {_text(k): _text(v) for k, v in counters.items()}

        yield CounterMetricFamily(
            "emcoins_jobs_submitted", "Jobs accepted by the API.",
            value=float(counters.get(SUBMITTED, 0)),
        )
        yield _finished_family(counters.items())
        for name, raw in zip(BUCKETS, histograms, strict=True):
            raw = {_text(k): _text(v) for k, v in raw.items()}
            yield HistogramMetricFamily(
                f"emcoins_{name}", _HELP[name],
                buckets=cumulative_buckets(name, raw), sum_value=float(raw.get("sum", 0.0)),
            )
        gauge = GaugeMetricFamily(
            "emcoins_queue_depth", "Tasks waiting in a Celery queue.", labels=["queue"]
        )
        for queue, depth in zip(self.queues, depths, strict=True):
            gauge.add_metric([queue], float(depth))
        yield gauge


def _finished_family(items: Iterable[tuple[str, str]]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "emcoins_jobs_finished", "Jobs that reached a final status, by status and error code.",
        labels=["status", "code"],
    )
    seen = set()
    for field, value in sorted(items):
        if field.startswith(f"{_FINISHED}|"):
            _, status, code = field.split("|", 2)
            family.add_metric([status, code], float(value))
            seen.add(status)
    # Zero series for the code-less statuses not seen yet, so rate() has something to read.
    for status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
        if status.value not in seen:
            family.add_metric([status.value, NO_CODE], 0.0)
    return family


class TaskObserver:
    """Worker-side bookkeeping around each task, fed by Celery's prerun and postrun signals.

    Knows nothing of Celery: it takes task ids and names. Subtask ids start with the job
    id (``<job>.fetch.3``, see :mod:`workers.canvas`), which is how a task finds its job.
    """

    def __init__(self, store: Callable[[], JobStore], *, ttl_seconds: int):
        self.store = store
        self.ttl_seconds = ttl_seconds
        self._started: dict[str, float] = {}

    @staticmethod
    def job_of(task_id: str | None) -> str | None:
        """The job id a subtask id starts with, or None for other tasks."""
        if not task_id or "." not in task_id:
            return None
        return task_id.split(".", 1)[0]

    def started(self, task_id: str | None, name: str) -> None:
        """Note the start time; log lines from now on carry the job id."""
        logs.current_job.set(self.job_of(task_id))
        if task_id:
            self._started[task_id] = time.monotonic()

    def finished(self, task_id: str | None, name: str) -> None:
        """Record a fetch's duration and count the job if this task finished it."""
        # The job id stays set: Celery logs the task's outcome after this signal.
        started = self._started.pop(task_id, None) if task_id else None
        job_id = self.job_of(task_id)
        if job_id is None:
            return
        store = self.store()
        recorder = Metrics(store.client, ttl_seconds=self.ttl_seconds)
        if name == FETCH_TASK and started is not None:
            recorder.observe(FETCH_DURATION, time.monotonic() - started)
        recorder.job_finished_by_id(store, job_id)
