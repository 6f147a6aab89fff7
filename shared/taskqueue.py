"""Task names, queues, subtask ids, the batch split and the Celery configuration, in one place.

The workers register their tasks under these names; the API sends them by name through a
Celery client of its own, configured from :func:`celery_config`, and never imports the
workers. Nothing here imports Celery.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.config import Settings
from shared.contract import JobSpec

FETCH = "emcoins.fetch_batch"
FIT = "emcoins.fit"
REPLICATES = "emcoins.replicates"
IO_QUEUE = "io"
CPU_QUEUE = "cpu"
# Chunks of bootstrap and components-test replicates: a queue of their own, so that a job
# of thousands of refits does not stand in front of other jobs' fits. Workers of the cpu
# queue take from it too, but only when no fit waits (see :func:`worker_queues`).
REPLICATES_QUEUE = "replicates"
QUEUES = (IO_QUEUE, CPU_QUEUE, REPLICATES_QUEUE)
# The hash where kombu's Redis transport keeps each task handed to a worker until it is
# acknowledged (its default name, set explicitly since the recovery sweep reads it).
UNACKED_KEY = "unacked"
ROUTES = {
    FETCH: {"queue": IO_QUEUE},
    FIT: {"queue": CPU_QUEUE},
    REPLICATES: {"queue": REPLICATES_QUEUE},
}


def batches(total: int, size: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each batch of at most ``size`` draws covering ``total`` draws."""
    return [(first, min(size, total - first)) for first in range(0, total, size)]


def fetch_id(job_id: str, batch: int) -> str:
    """The task id of a job's fetch of one batch."""
    return f"{job_id}.fetch.{batch}"


def fit_id(job_id: str, methods: list[str] | tuple[str, ...]) -> str:
    """The task id of a job's fit of some methods."""
    return f"{job_id}.fit.{'+'.join(methods)}"


def replicates_id(job_id: str, analysis: str, stage: int, chunk: int) -> str:
    """The task id of one chunk of replicates of a job's analysis."""
    return f"{job_id}.{analysis}.{stage}.{chunk}"


def worker_queues(queues: list[str]) -> list[str]:
    """The queues a worker started with ``-Q queues`` consumes, in the order it polls
    them: a cpu worker takes replicate chunks too, after the fits.

    With ``queue_order_strategy: priority`` (below), kombu's Redis transport polls the
    queues in this order on every BRPOP, so a chunk is taken only when no fit waits; a
    fit waits at most for a chunk running in each of the worker's processes.
    """
    if CPU_QUEUE in queues and REPLICATES_QUEUE not in queues:
        return [*queues, REPLICATES_QUEUE]
    return list(queues)


def job_of(task_id: str | None) -> str | None:
    """The job id a subtask id starts with, or None for other tasks."""
    if not task_id or "." not in task_id:
        return None
    return task_id.split(".", 1)[0]


def task_ids(job_id: str, spec: JobSpec, *, batch_size: int) -> list[str]:
    """Every subtask id the job may have."""
    ids = [fit_id(job_id, [method]) for method in spec.methods]
    if len(spec.methods) > 1:
        ids.append(fit_id(job_id, spec.methods))
    if spec.source is not None:
        count = len(batches(spec.source.draws, batch_size))
        ids += [fetch_id(job_id, i) for i in range(count)]
    return ids


def broker_url(settings: Settings) -> str:
    """``redis_url``, or with sentinels kombu's ``sentinel://host:port/db;sentinel://...``,
    whose database and password come from ``redis_url`` as the job store's do."""
    if not settings.redis_sentinels:
        return settings.redis_url
    url = urlsplit(settings.redis_url)
    credentials = url.netloc.rpartition("@")[0]
    prefix = f"sentinel://{credentials}@" if credentials else "sentinel://"
    return ";".join(f"{prefix}{address}{url.path or '/0'}" for address in settings.redis_sentinels)


def celery_config(settings: Settings) -> dict[str, Any]:
    """The configuration every Celery app of the service uses, workers' and API's alike."""
    redis_options = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    return {
        "broker_url": broker_url(settings),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # kombu's sentinel transport asks the sentinels for this master, and asks
            # again when its connection breaks (after a failover, the new master).
            **({"master_name": settings.redis_master} if settings.redis_sentinels else {}),
            "visibility_timeout": settings.visibility_timeout,
            # Poll a worker's queues in the order it names them, not round robin: a cpu
            # worker's fits always come before replicate chunks (see worker_queues).
            "queue_order_strategy": "priority",
            "unacked_restore_interval": settings.unacked_restore_interval,
            # Scan on every sweep, not every tenth: a dead worker's tasks come back
            # within visibility_timeout + unacked_restore_interval.
            "unacked_restore_throttle": 1,
            "unacked_key": UNACKED_KEY,
            **redis_options,
        },
        # Keep reconnecting while Redis is down or restarting, instead of exiting.
        "broker_connection_max_retries": None,
        "redis_socket_timeout": settings.redis_timeout,
        "redis_socket_connect_timeout": settings.redis_timeout,
        # JSON only: a pickled message could run code in the worker.
        "task_serializer": "json",
        "accept_content": ["json"],
        # Results live in the job store; there is no Celery result backend.
        "task_ignore_result": True,
        # A task is acknowledged once done, and given back if its worker dies, so a
        # crash mid-fit redelivers it instead of losing it. Tasks are idempotent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": CPU_QUEUE,
        "task_routes": ROUTES,
        "worker_hijack_root_logger": False,
        "task_track_started": False,
    }
