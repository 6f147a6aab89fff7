"""Celery tasks: thin wrappers that read the job, call ``shared`` and record what happened."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun

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


@app.task(name="emcoins.fetch_batch")
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


@app.task(name="emcoins.fit", bind=True, max_retries=50)
def fit(self, job_id: str, method: str) -> dict[str, Any] | None:
    """Fit one method to the job's draws; None if the job is over or gone."""
    jobs = store()
    try:
        record = jobs.get(job_id)
    except JobNotFound:
        return None
    if record.status.is_final:
        return None
    counts = record.counts
    if counts is None:
        batches = jobs.batches(job_id)
        pairs = [pair for index in sorted(batches) for pair in batches[index]]
        if len(pairs) != record.draws_total:
            # Fired before every batch was recorded (a redelivered member of the fan-out
            # can do that): wait for the rest, and give up only if they never come.
            if self.request.retries < self.max_retries:
                raise self.retry(countdown=0.2)
            jobs.fail(
                job_id,
                code=ErrorCode.SOURCE_UNAVAILABLE.value,
                message=f"only {len(pairs)} of {record.draws_total} draws were fetched",
                details={"draws_fetched": len(pairs)},
            )
            return None
        counts = aggregate_counts(pairs)
    if not jobs.start_fitting(job_id, counts):
        return None
    try:
        return run_method(method, counts, record.spec)
    except Exception as exc:
        log.exception("fit %s of job %s failed", method, job_id)
        jobs.fail(job_id, code=ErrorCode.FIT_FAILED.value, message=f"{method} fit failed: {exc}")
        return None


@app.task(name="emcoins.finish")
def finish(parts: list[dict[str, Any] | None], job_id: str) -> None:
    """Store the merged result; a cancelled or failed job keeps its final status."""
    if any(part is None for part in parts):
        return
    store().succeed(job_id, merge_results(parts))


# Metrics and log context around every task; the work is in shared.metrics.TaskObserver.
_observer = TaskObserver(store, ttl_seconds=get_settings().job_ttl_seconds)


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _observer.started(task_id, getattr(task, "name", ""))


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _observer.finished(task_id, getattr(task, "name", ""))
