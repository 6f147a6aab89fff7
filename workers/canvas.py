"""How a job becomes a Celery canvas: fetch batches in parallel, fits in parallel, then finish.

Subtask ids are derived from the job id, so cancelling can revoke them without
having stored them.
"""

from __future__ import annotations

from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

from workers.celery_app import app
from workers.tasks import fetch_batch, finish, fit


def batches(total: int, size: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each batch of at most ``size`` draws covering ``total`` draws."""
    return [(first, min(size, total - first)) for first in range(0, total, size)]


def task_ids(job_id: str, spec: dict[str, Any], *, batch_size: int) -> list[str]:
    """Every subtask id of the job's canvas."""
    ids = [f"{job_id}.fit.{method}" for method in spec["methods"]] + [f"{job_id}.finish"]
    if spec.get("source"):
        count = len(batches(spec["source"]["draws"], batch_size))
        ids += [f"{job_id}.fetch.{i}" for i in range(count)]
    return ids


def build(job_id: str, spec: dict[str, Any], *, batch_size: int) -> Signature:
    """The canvas for one job."""
    fits = chord(
        group(fit.si(job_id, m).set(task_id=f"{job_id}.fit.{m}") for m in spec["methods"]),
        finish.si(job_id).set(task_id=f"{job_id}.finish"),
    )
    source = spec.get("source")
    if not source:
        return fits
    fetches = group(
        fetch_batch.si(job_id, source["url"], i, first, count).set(task_id=f"{job_id}.fetch.{i}")
        for i, (first, count) in enumerate(batches(source["draws"], batch_size))
    )
    return chain(fetches, fits)


def submit(job_id: str, spec: dict[str, Any], *, batch_size: int) -> None:
    """Send the job's canvas to the broker."""
    build(job_id, spec, batch_size=batch_size).apply_async()


def revoke(job_id: str, spec: dict[str, Any], *, batch_size: int) -> None:
    """Ask the workers to drop the job's pending subtasks."""
    app.control.revoke(task_ids(job_id, spec, batch_size=batch_size))
