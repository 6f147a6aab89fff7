"""The only Celery instance, configured from the settings object.

Start workers with ``celery -A workers.celery_app worker -Q io -P threads`` (fetching)
and ``celery -A workers.celery_app worker -Q cpu`` (fitting).
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from shared import logs
from shared.config import Settings, get_settings

IO_QUEUE = "io"
CPU_QUEUE = "cpu"


def configure(app: Celery, settings: Settings) -> Celery:
    """Apply the settings to a Celery app: Redis broker and backend, JSON only, late acks."""
    redis_options = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.unacked_restore_interval,
            # Scan on every sweep, not every tenth: a dead worker's tasks come back
            # within visibility_timeout + unacked_restore_interval.
            "unacked_restore_throttle": 1,
            **redis_options,
        },
        # Keep reconnecting while Redis is down or restarting, instead of exiting.
        broker_connection_max_retries=None,
        result_backend_transport_options=redis_options,
        redis_socket_timeout=settings.redis_timeout,
        redis_socket_connect_timeout=settings.redis_timeout,
        # JSON only: a pickled message could run code in the worker.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=settings.job_ttl_seconds,
        # Results live in the job store; Celery's own would be two more Redis writes a task.
        task_ignore_result=True,
        # A task is acknowledged once done, and given back if its worker dies, so a
        # crash mid-fit redelivers it instead of losing it. Tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CPU_QUEUE,
        task_routes={
            "emcoins.fetch_batch": {"queue": IO_QUEUE},
            "emcoins.fit": {"queue": CPU_QUEUE},
        },
        worker_hijack_root_logger=False,
        task_track_started=False,
    )
    return app


app = configure(Celery("emcoins", include=["workers.tasks"]), get_settings())


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_) -> None:
    """Worker log lines in EMCOINS_LOG_FORMAT (JSON by default), with the task's job id."""
    logs.apply_format(logger, get_settings().log_format)
