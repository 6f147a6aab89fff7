"""Celery tasks: thin wrappers that read the job, call ``shared`` and record what happened."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.signals import task_postrun, task_prerun, worker_init
from kombu.exceptions import OperationalError

from shared.config import get_settings
from shared.contract import BOOTSTRAP, COMPONENTS_TEST, EM, JobError
from shared.dispatch import Dispatcher
from shared.draws import aggregate_counts
from shared.errors import InvalidDrawError
from shared.fitting import fit_methods
from shared.metrics import TaskObserver
from shared.replication import Replication
from shared.status import ErrorCode
from shared.store import JobRecord, JobStore, Saved, connect
from shared.taskqueue import FETCH, FIT, REPLICATES
from workers import replicates as analyses
from workers.celery_app import app
from workers.fetch import Cancelled, DrawFetcher, SourceUnavailable, make_session
from workers.results import TEST_ERROR, store_result
from workers.results import running_record as _running_record

log = logging.getLogger(__name__)

_per_process: dict[str, Any] = {}
# How many tasks this worker runs at once (its -c), set when the worker starts.
_worker = {"concurrency": 1}


@worker_init.connect
def _concurrency(sender: Any = None, **_: Any) -> None:
    """Remember the worker's concurrency: its fetcher gets threads for that many batches."""
    _worker["concurrency"] = max(1, int(getattr(sender, "concurrency", None) or 1))


def _resources() -> dict[str, Any]:
    """This process's store, dispatcher and draw fetcher; prefork children must not share
    sockets."""
    if _per_process.get("pid") != os.getpid():
        settings = get_settings()
        client = connect(settings)
        _per_process.clear()
        _per_process.update(
            pid=os.getpid(),
            store=JobStore(
                client,
                ttl_seconds=settings.job_ttl_seconds,
                replication=Replication.from_settings(settings),
            ),
            dispatcher=Dispatcher(app, client, batch_size=settings.fetch_batch_size),
            fetcher=DrawFetcher(
                make_session(settings.fetch_concurrency),
                settings,
                batches=_worker["concurrency"],
            ),
        )
    return _per_process


def store() -> JobStore:
    """The job store of this process."""
    return _resources()["store"]


def dispatcher() -> Dispatcher:
    """The dispatcher that sends this process's next steps."""
    return _resources()["dispatcher"]


# Redis (store or broker) not answering. Celery's retry cannot help here: it must
# publish the retry to the broker, and when that fails it drops the message.
_INFRA_ERRORS = (redis.ConnectionError, redis.TimeoutError, OperationalError)


class JobTask(Task):
    """Base of the job tasks: survives Redis outages; a task that fails for good fails its job."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except _INFRA_ERRORS as exc:
            # Give the message back. If Redis is still away, the give-back fails too and
            # the message stays unacknowledged in Redis, to be redelivered after the
            # visibility timeout; the pause keeps a flapping Redis from a hot loop.
            log.warning("job %s: Redis not answering (%s); task given back", args[:1], exc)
            time.sleep(1.0)
            raise Reject(exc, requeue=True) from exc

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Record an unexpected error on the job, so it is never left running forever."""
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        try:
            store().fail(job_id, JobError(
                code=ErrorCode.WORKER_ERROR.value,
                message=f"{self.name} failed: {type(exc).__name__}: {exc}",
                details={"task": task_id},
            ))
        except _INFRA_ERRORS:
            log.exception("could not record the failure of job %s", job_id)


@app.task(name=FETCH, base=JobTask)
def fetch_batch(job_id: str, url: str, batch: int, first: int, count: int) -> None:
    """Fetch draws ``first .. first+count-1`` of a job, record them, and start the fits
    if this batch was the last one missing."""
    jobs = store()
    record = _running_record(jobs, job_id)
    if record is None:
        return
    if jobs.has_batch(job_id, batch):
        # Redelivered after it was recorded: the crash (or a Redis outage) may have come
        # before all the fits were sent. Send those whose part is still missing: a fit
        # sent twice changes nothing (parts are write-once), a fit never sent would leave
        # the job fitting forever (seen when Redis stopped between two sends).
        if _all_batches(jobs, record):
            saved = jobs.parts(job_id)
            missing = [method for method in record.spec.methods if method not in saved]
            if missing:
                dispatcher().start_fits(job_id, record.spec, methods=missing)
        return
    jobs.start_fetching(job_id)

    checked = {"at": time.monotonic(), "over": False}

    def cancelled() -> bool:
        # Asked by the fetcher every 0.05 s while the batch runs; Redis is consulted at
        # most every 0.2 s, so a cancel stops the batch's requests within about 0.25 s.
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
        jobs.fail(job_id, JobError(
            code=ErrorCode.SOURCE_UNAVAILABLE.value,
            message=str(exc),
            details={"url": exc.url, "draw": exc.index},
        ))
        return
    except InvalidDrawError as exc:
        jobs.fail(job_id, JobError(
            code=ErrorCode.INVALID_DRAWS.value, message=str(exc), details={"draw": exc.index}
        ))
        return
    if jobs.record_batch(job_id, batch, pairs) is Saved.COMPLETED:
        dispatcher().start_fits(job_id, record.spec)


@app.task(name=FIT, base=JobTask)
def fit(job_id: str, methods: list[str]) -> None:
    """Fit some methods to the job's draws, keep each one's part, and store the result if
    the last part missing was among them. A job with a components test runs the test
    first (the fits are sent again when it ends); an EM fit with a bootstrap is kept until
    the bootstrap's replicates are in."""
    jobs = store()
    record = _running_record(jobs, job_id)
    if record is None:
        return
    spec = record.spec
    todo = [method for method in methods if method not in jobs.parts(job_id)]
    if not todo:
        # Redelivered after its parts were saved: the crash may have come before the
        # result was stored.
        store_result(jobs, record)
        return
    counts = record.counts
    if counts is None:
        batches = jobs.batches(job_id)
        if len(batches) < record.batches_total:
            return  # not started by the last fetch; that fetch will start the fits
        counts = aggregate_counts(pair for i in sorted(batches) for pair in batches[i])
    if not jobs.start_fitting(job_id, counts):
        return
    # The analyses read the counts from the record; jobs without them never build arrays
    # here (fit_methods makes its own).
    record = dataclasses.replace(record, counts=counts)
    selected = None
    if spec.test_components is not None:
        test = jobs.outcome(job_id, COMPONENTS_TEST)
        if test is None and jobs.outcome(job_id, TEST_ERROR) is None:
            if not analyses.run_components_test(jobs, dispatcher(), record):
                return
        elif test is not None and spec.chooses_components:
            selected = int(test["selected"])
    if EM in todo and spec.bootstrap is not None and analyses.bootstrap_started(jobs, job_id):
        # Redelivered while its bootstrap runs: the EM fit is kept with the bootstrap.
        analyses.resume_stage(jobs, dispatcher(), record, BOOTSTRAP, 0)
        todo.remove(EM)
        if not todo:
            return
    parts = fit_methods(
        todo, counts, spec, max_gmm_draws=get_settings().max_gmm_draws, selected=selected
    )
    for part in parts:
        if part.method == EM and spec.bootstrap is not None and part.estimate is not None:
            analyses.start_bootstrap(jobs, dispatcher(), record, part)
        elif jobs.save_part(job_id, part) is Saved.COMPLETED:
            store_result(jobs, record)


@app.task(name=REPLICATES, base=JobTask)
def replicates(job_id: str, analysis: str, stage: int, chunk: int) -> None:
    """Run one chunk of replicates of a job's bootstrap or components test (see
    :mod:`workers.replicates`)."""
    analyses.run_chunk(store(), dispatcher(), job_id, analysis, stage, chunk)


def _all_batches(jobs: JobStore, record: JobRecord) -> bool:
    return jobs.batch_count(record.id) >= record.batches_total


# Metrics and log context around every task; the work is in shared.metrics.TaskObserver.
_observer = TaskObserver(lambda: store().client)


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _observer.started(task_id, getattr(task, "name", ""))


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _observer.finished(task_id, getattr(task, "name", ""))
