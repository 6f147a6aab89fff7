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

from typing import Any

from celery import group

from workers.celery_app import app

FETCH = "emcoins.fetch_batch"
FIT = "emcoins.fit"


def batches(total: int, size: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each batch of at most ``size`` draws covering ``total`` draws."""
    return [(first, min(size, total - first)) for first in range(0, total, size)]


def fetch_id(job_id: str, batch: int) -> str:
    """The task id of a job's fetch of one batch."""
    return f"{job_id}.fetch.{batch}"


def fit_id(job_id: str, method: str) -> str:
    """The task id of a job's fit of one method."""
    return f"{job_id}.fit.{method}"


def task_ids(job_id: str, spec: dict[str, Any], *, batch_size: int) -> list[str]:
    """Every subtask id of the job."""
    ids = [fit_id(job_id, method) for method in spec["methods"]]
    if spec.get("source"):
        count = len(batches(spec["source"]["draws"], batch_size))
        ids += [fetch_id(job_id, i) for i in range(count)]
    return ids


def start_fetching(job_id: str, url: str, total: int, *, batch_size: int) -> None:
    """Send one fetch subtask per batch, to run in parallel."""
    group(
        app.signature(FETCH, args=(job_id, url, i, first, count), task_id=fetch_id(job_id, i))
        for i, (first, count) in enumerate(batches(total, batch_size))
    ).apply_async()


def start_fits(job_id: str, methods: list[str]) -> None:
    """Send one fit subtask per method, to run in parallel."""
    group(
        app.signature(FIT, args=(job_id, method), task_id=fit_id(job_id, method))
        for method in methods
    ).apply_async()


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
