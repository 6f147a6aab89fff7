"""Celery tasks: thin wrappers that read the job, call ``shared`` and record what happened."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery import Task
from celery.signals import task_postrun, task_prerun
from kombu.exceptions import OperationalError

from shared.config import get_settings
from shared.draws import aggregate_counts
from shared.errors import InvalidDrawError
from shared.fitting import merge_results, run_method
from shared.metrics import TaskObserver
from shared.status import ErrorCode
from shared.store import JobNotFound, JobStore
from workers.celery_app import app
from workers.fetch import Cancelled, DrawFetcher, SourceUnavailable, make_session

log = logging.getLogger(__name__)

_per_process: dict[str, Any] = {}


def _resources() -> dict[str, Any]:
    """This process's store and draw fetcher; prefork children must not share sockets."""
    if _per_process.get("pid") != os.getpid():
        settings = get_settings()
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            health_check_interval=30,
        )
        _per_process.clear()
        _per_process.update(
            pid=os.getpid(),
            store=JobStore(client, ttl_seconds=settings.job_ttl_seconds),
            fetcher=DrawFetcher(make_session(settings.fetch_concurrency), settings),
        )
    return _per_process


def store() -> JobStore:
    """The job store of this process."""
    return _resources()["store"]


# Redis (store or broker) not answering: retry the task later rather than lose it.
# If even the retry cannot be sent, the unacknowledged message is redelivered by the
# broker's visibility-timeout sweep once Redis is back.
_INFRA_ERRORS = (redis.ConnectionError, redis.TimeoutError, OperationalError)


def _wait_countdown(retries: int) -> float:
    """Seconds before looking again for inputs that are not all there yet (about 3 min in all)."""
    return min(0.1 * 1.5**retries, 5.0)


class JobTask(Task):
    """Base of the job tasks: retries on Redis errors; a task that fails for good fails its job."""

    autoretry_for = _INFRA_ERRORS
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 40

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Record the failure on the job, so it is never left running forever."""
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        try:
            store().fail(
                job_id,
                code=ErrorCode.WORKER_ERROR.value,
                message=f"{self.name} failed: {type(exc).__name__}: {exc}",
                details={"task": task_id},
            )
        except _INFRA_ERRORS:
            log.exception("could not record the failure of job %s", job_id)


@app.task(name="emcoins.fetch_batch", base=JobTask)
def fetch_batch(job_id: str, url: str, batch: int, first: int, count: int) -> None:
    """Fetch draws ``first .. first+count-1`` of a job and record them as one batch."""
    jobs = store()
    status = jobs.status(job_id)
    if status is None or status.is_final:
        return
    if batch in jobs.batches(job_id):
        return  # redelivered after it was recorded
    jobs.start_fetching(job_id)

    checked = {"at": time.monotonic(), "over": False}

    def cancelled() -> bool:
        # Asked before each draw; Redis is consulted at most every 0.2 s so a
        # 30-draw batch does not pay 30 round trips on its hot path.
        now = time.monotonic()
        if not checked["over"] and now - checked["at"] > 0.2:
            current = jobs.status(job_id)
            checked.update(at=now, over=current is None or current.is_final)
        return checked["over"]

    try:
        pairs = _resources()["fetcher"].fetch(url, range(first, first + count), cancelled=cancelled)
    except Cancelled:
        return
    except SourceUnavailable as exc:
        jobs.fail(
            job_id,
            code=ErrorCode.SOURCE_UNAVAILABLE.value,
            message=str(exc),
            details={"url": exc.url, "draw": exc.index},
        )
        return
    except InvalidDrawError as exc:
        jobs.fail(
            job_id,
            code=ErrorCode.INVALID_DRAWS.value,
            message=str(exc),
            details={"draw": exc.index},
        )
        return
    jobs.record_batch(job_id, batch, pairs)


@app.task(name="emcoins.fit", base=JobTask, bind=True)
def fit(self: Task, job_id: str, method: str) -> None:
    """Fit one method to the job's draws and keep its part of the result."""
    jobs = store()
    try:
        record = jobs.get(job_id)
    except JobNotFound:
        return
    if record.status.is_final or method in jobs.parts(job_id):
        return
    counts = record.counts
    if counts is None:
        batches = jobs.batches(job_id)
        pairs = [pair for index in sorted(batches) for pair in batches[index]]
        if len(pairs) != record.draws_total:
            # Started before every batch was recorded (a redelivered member of the
            # fan-out can do that): wait for the rest, and fail only if they never come.
            _wait_or_fail(self, jobs, job_id, f"only {len(pairs)} of {record.draws_total} "
                          "draws were fetched")
            return
        counts = aggregate_counts(pairs)
    if not jobs.start_fitting(job_id, counts):
        return
    try:
        part = run_method(method, counts, record.spec)
    except ValueError as exc:
        # The data cannot support the fit (e.g. too few flips per draw for K coins).
        jobs.fail(job_id, code=ErrorCode.FIT_FAILED.value, message=f"{method} fit: {exc}")
        return
    jobs.save_part(job_id, method, part)


@app.task(name="emcoins.finish", base=JobTask, bind=True)
def finish(self: Task, job_id: str) -> None:
    """Store the merged result once every method's part is in."""
    jobs = store()
    try:
        record = jobs.get(job_id)
    except JobNotFound:
        return
    if record.status.is_final:
        return
    parts = jobs.parts(job_id)
    missing = [method for method in record.spec["methods"] if method not in parts]
    if missing:
        _wait_or_fail(self, jobs, job_id, f"no result from {', '.join(missing)}")
        return
    jobs.succeed(job_id, merge_results([parts[m] for m in record.spec["methods"]]))


def _wait_or_fail(task: Task, jobs: JobStore, job_id: str, problem: str) -> None:
    """Look again later for inputs still on their way; after about 3 minutes, fail the job."""
    if task.request.retries < task.max_retries:
        raise task.retry(countdown=_wait_countdown(task.request.retries))
    jobs.fail(job_id, code=ErrorCode.WORKER_ERROR.value, message=f"gave up waiting: {problem}")


# Metrics and log context around every task; the work is in shared.metrics.TaskObserver.
_observer = TaskObserver(store, ttl_seconds=get_settings().job_ttl_seconds)


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _observer.started(task_id, getattr(task, "name", ""))


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _observer.finished(task_id, getattr(task, "name", ""))
