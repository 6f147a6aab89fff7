"""The Redis client, job store and Celery producer, attached to the app once."""

from __future__ import annotations

from flask import Flask, current_app

from shared.config import Settings
from shared.store import JobStore, connect
from workers.celery_app import app as celery_app
from workers.celery_app import configure

EXTENSION = "emcoins"


def init_app(app: Flask) -> None:
    """Create the app's Redis client and job store from its settings."""
    settings: Settings = app.config["SETTINGS"]
    client = connect(settings.redis_url, timeout=settings.redis_timeout)
    app.extensions[EXTENSION] = JobStore(client, ttl_seconds=settings.job_ttl_seconds)
    # The API only sends tasks; the producer must speak to the same Redis as the store.
    configure(celery_app, settings)


def store() -> JobStore:
    """The current app's job store."""
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    """The current app's settings."""
    return current_app.config["SETTINGS"]
