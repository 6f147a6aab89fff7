"""The Redis client, job store and Celery producer, attached to the app once."""

from __future__ import annotations

import redis
from flask import Flask, current_app

from shared.config import Settings
from shared.store import JobStore
from workers.celery_app import app as celery_app
from workers.celery_app import configure

EXTENSION = "emcoins"


def init_app(app: Flask) -> None:
    """Create the app's Redis client and job store from its settings."""
    settings: Settings = app.config["SETTINGS"]
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
    )
    app.extensions[EXTENSION] = JobStore(client, ttl_seconds=settings.job_ttl_seconds)
    # The API only sends tasks; the producer must speak to the same Redis as the store.
    configure(celery_app, settings)


def store() -> JobStore:
    """The current app's job store."""
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    """The current app's settings."""
    return current_app.config["SETTINGS"]
