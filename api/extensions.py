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
from shared.store import JobStore, connect
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
    client = connect(settings.redis_url, timeout=settings.redis_timeout)
    # set_as_current=False: this client must not become the process's default Celery app.
    celery = Celery("emcoins-api", set_as_current=False)
    celery.conf.update(celery_config(settings))
    app.extensions[EXTENSION] = Services(
        store=JobStore(client, ttl_seconds=settings.job_ttl_seconds),
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


def dispatcher() -> Dispatcher:
    """Starts and revokes jobs' subtasks."""
    return _services().dispatcher


def settings() -> Settings:
    """The current app's settings."""
    return current_app.config["SETTINGS"]
