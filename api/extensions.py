"""The Redis client, job store and Celery client of the app, made once from its settings.

The API sends tasks by name through a Celery client of its own, configured from
:mod:`shared.taskqueue`; it never imports the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import Flask, current_app

from shared.config import Settings
from shared.dispatch import Dispatcher
from shared.metrics import Metrics
from shared.replication import Replication
from shared.status import JobStatus
from shared.store import JobNotFound, JobStore, connect
from shared.taskqueue import celery_config

EXTENSION = "emcoins"


@dataclass(frozen=True)
class Services:
    """What the routes use besides the settings."""

    store: JobStore
    celery: Celery
    dispatcher: Dispatcher


def init_app(app: Flask) -> None:
    """Create the app's Redis client, job store and Celery client from its settings."""
    settings: Settings = app.config["SETTINGS"]
    client = connect(settings)
    replication = Replication.from_settings(settings)
    # set_as_current=False: this client must not become the process's default Celery app.
    celery = Celery("emcoins-api", set_as_current=False)
    celery.conf.update(celery_config(settings))
    app.extensions[EXTENSION] = Services(
        store=JobStore(client, ttl_seconds=settings.job_ttl_seconds, replication=replication),
        celery=celery,
        dispatcher=Dispatcher(celery, client, batch_size=settings.fetch_batch_size),
    )


def _services() -> Services:
    return current_app.extensions[EXTENSION]


def store() -> JobStore:
    """The current app's job store."""
    return _services().store


def redis_client() -> redis.Redis:
    """The current app's Redis client (the job store's and the broker's)."""
    return _services().store.client


def celery() -> Celery:
    """The current app's Celery client: sends, revokes and pings by name."""
    return _services().celery


def count_submitted() -> None:
    """Count an accepted job. With sentinels, this write waits until a replica has it, and
    so the job and its tasks, written before it on the master (see :mod:`shared.replication`)."""
    jobs = store()
    jobs.replication.write(jobs.client, lambda client: Metrics(client).job_submitted())


def resend_if_queued(job_id: str) -> None:
    """Send a replayed job's tasks again while it is still queued. The first request may
    have stored the job and then lost Redis before its tasks were sent or replicated (it
    got a 503 and retried with its key): without this, the job would stay queued for
    good. Tasks are write-once, so a second copy of one still queued changes nothing."""
    try:
        record = store().get(job_id)
    except JobNotFound:
        return
    if record.status is JobStatus.QUEUED:
        dispatcher().submit(job_id, record.spec)


def dispatcher() -> Dispatcher:
    """Starts and revokes jobs' subtasks."""
    return _services().dispatcher


def settings() -> Settings:
    """The current app's settings."""
    return current_app.config["SETTINGS"]
