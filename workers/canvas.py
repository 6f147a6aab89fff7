"""How a job is started and carried from step to step.

A source job starts as a group of fetch subtasks, one per batch of draws; the
fetch that records the last batch starts the fits, one subtask per method; the
fit that saves the last part stores the result. Each step checks its inputs in
the job store, where every write is write-once, so a redelivered or duplicated
subtask changes nothing and cannot start the next step early.

Celery's chords are not used for the fan-in: their counter lives in the result
backend, and a Redis restart in the middle of a job loses it (seen in the fault
tests: "Chord ... raised: ConnectionError", and the job never finished).

Signatures are built by task name, so the tasks module can start the next step
without importing itself; subtask ids derive from the job id, so cancelling can
revoke them without having stored them.
"""

from __future__ import annotations

import os
from typing import Any

import redis

from shared.store import connect
from workers.celery_app import CPU_QUEUE, app

FETCH = "emcoins.fetch_batch"
FIT = "emcoins.fit"
# Fits of one job go out as separate subtasks while fewer than this many wait.
PARALLEL_FITS_BELOW = 2


def batches(total: int, size: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each batch of at most ``size`` draws covering ``total`` draws."""
    return [(first, min(size, total - first)) for first in range(0, total, size)]


def fetch_id(job_id: str, batch: int) -> str:
    """The task id of a job's fetch of one batch."""
    return f"{job_id}.fetch.{batch}"


def fit_id(job_id: str, methods: list[str]) -> str:
    """The task id of a job's fit of some methods."""
    return f"{job_id}.fit.{'+'.join(methods)}"


def task_ids(job_id: str, spec: dict[str, Any], *, batch_size: int) -> list[str]:
    """Every subtask id the job may have."""
    methods = spec["methods"]
    ids = [fit_id(job_id, [method]) for method in methods]
    if len(methods) > 1:
        ids.append(fit_id(job_id, methods))
    if spec.get("source"):
        count = len(batches(spec["source"]["draws"], batch_size))
        ids += [fetch_id(job_id, i) for i in range(count)]
    return ids


def start_fetching(job_id: str, url: str, total: int, *, batch_size: int) -> None:
    """Send one fetch subtask per batch, to run in parallel (plain sends: a Celery group
    would only add overhead, since the fan-in goes through the job store)."""
    for i, (first, count) in enumerate(batches(total, batch_size)):
        app.send_task(FETCH, args=(job_id, url, i, first, count), task_id=fetch_id(job_id, i))


def start_fits(job_id: str, methods: list[str]) -> None:
    """Send the fits: one subtask per method when cpu workers are free, else one in all.

    Parallel fits shorten a job only if a second worker is idle to take one; under
    load every worker is busy anyway, and one subtask per job halves the overhead.
    """
    if len(methods) > 1 and queue_length(CPU_QUEUE) < PARALLEL_FITS_BELOW:
        parts = [[method] for method in methods]
    else:
        parts = [list(methods)]
    for part in parts:
        app.send_task(FIT, args=(job_id, part), task_id=fit_id(job_id, part))


def queue_length(queue: str) -> int:
    """How many messages wait in a queue: with the Redis broker, the length of a list."""
    return int(_broker_client().llen(queue))


def _broker_client() -> redis.Redis:
    # One client per process (prefork children must not share a parent's sockets) and
    # per broker URL (the API's factory may point the Celery app elsewhere).
    owner = (os.getpid(), app.conf.broker_url)
    if _broker.get("owner") != owner:
        client = connect(app.conf.broker_url, timeout=app.conf.redis_socket_timeout)
        _broker.update(owner=owner, client=client)
    return _broker["client"]


_broker: dict[str, Any] = {}


def submit(job_id: str, spec: dict[str, Any], *, batch_size: int) -> None:
    """Start a job: fetch its draws, or fit at once when the data came inline."""
    source = spec.get("source")
    if source:
        start_fetching(job_id, source["url"], source["draws"], batch_size=batch_size)
    else:
        start_fits(job_id, spec["methods"])


def revoke(job_id: str, spec: dict[str, Any], *, batch_size: int) -> None:
    """Ask the workers to drop the job's pending subtasks."""
    app.control.revoke(task_ids(job_id, spec, batch_size=batch_size))
