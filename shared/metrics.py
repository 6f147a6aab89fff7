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

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shared import keys, logs, taskqueue
from shared.replies import text
from shared.status import JobStatus

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
RESUMED = "jobs_resumed_total"
_FINISHED = "jobs_finished_total"
NO_CODE = "none"


def finished_field(status: str, code: str) -> str:
    """The counter field of jobs finished with ``status`` and error ``code``; the job store
    increments it when a job becomes final."""
    return f"{_FINISHED}|{status}|{code}"


def bucket_label(bound: float) -> str:
    """How a bucket's upper bound is written in its hash field and its ``le`` label."""
    return f"{bound:g}"


def bucket_field(name: str, value: float) -> str:
    """The hash field of the one bucket a value falls in: ``le:<bound>`` or ``le:+Inf``."""
    for bound in BUCKETS[name]:
        if value <= bound:
            return f"le:{bucket_label(bound)}"
    return "le:+Inf"


class Metrics:
    """Records events in Redis; a failed write is logged and never fails the job."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def job_submitted(self) -> None:
        """One more job accepted."""
        self._safely(lambda: self.client.hincrby(keys.metric_counters(), SUBMITTED, 1))

    def job_resumed(self) -> None:
        """One more job found carried by no task and given its next tasks again."""
        self._safely(lambda: self.client.hincrby(keys.metric_counters(), RESUMED, 1))

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

    def _safely(self, write):
        try:
            return write()
        except redis.RedisError as exc:
            log.warning("metrics not recorded: %s: %s", type(exc).__name__, exc)
            return None


def cumulative_buckets(name: str, raw: dict[str, str]) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``(le, count)`` pairs from per-bucket counts."""
    running = 0.0
    pairs = []
    for bound in (*BUCKETS[name], math.inf):
        le = "+Inf" if bound == math.inf else bucket_label(bound)
        running += float(raw.get(f"le:{le}", 0))
        pairs.append((le, running))
    return pairs


class RedisCollector(Collector):
    """Exposes the Redis-held figures and the Celery queues' lengths at scrape time."""

    def __init__(self, client: redis.Redis, *, broker: redis.Redis | None = None,
                 queues: Sequence[str] = taskqueue.QUEUES):
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
        counters = {text(k): text(v) for k, v in counters.items()}

        yield CounterMetricFamily(
            "emcoins_jobs_submitted", "Jobs accepted by the API.",
            value=float(counters.get(SUBMITTED, 0)),
        )
        yield _finished_family(counters.items())
        yield CounterMetricFamily(
            "emcoins_jobs_resumed",
            "Jobs the workers' sweep found carried by no task (lost with a Redis master) "
            "and gave their next tasks again.",
            value=float(counters.get(RESUMED, 0)),
        )
        for name, raw in zip(BUCKETS, histograms, strict=True):
            raw = {text(k): text(v) for k, v in raw.items()}
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
    id (``<job>.fetch.3``, see :mod:`shared.taskqueue`), which is how a task finds its job.
    Finished jobs are counted by the job store's final transition, not here.
    """

    def __init__(self, client: Callable[[], redis.Redis]):
        self.client = client
        self._started: dict[str, float] = {}

    def started(self, task_id: str | None, name: str) -> None:
        """Note the start time; log lines from now on carry the job id."""
        logs.current_job.set(taskqueue.job_of(task_id))
        if task_id:
            self._started[task_id] = time.monotonic()

    def finished(self, task_id: str | None, name: str) -> None:
        """Record a fetch's duration."""
        # The job id stays set: Celery logs the task's outcome after this signal.
        started = self._started.pop(task_id, None) if task_id else None
        if name == taskqueue.FETCH and started is not None:
            Metrics(self.client()).observe(FETCH_DURATION, time.monotonic() - started)
