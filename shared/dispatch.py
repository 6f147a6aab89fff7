"""How a job is started and carried from step to step, by task name.

A source job starts as one fetch subtask per batch of draws; the fetch that records the
last batch starts the fits; the fit that saves the last part stores the result. A job with
a bootstrap or a components test fans its replicates out in chunks the same way: the chunk
saved last takes the analysis to its next stage, or to the result. Each step
checks its inputs in the job store, where every write is write-once, so a redelivered or
duplicated subtask changes nothing and cannot start the next step early.

Celery's chords are not used for the fan-in: their counter lives in the result backend,
and a Redis restart in the middle of a job loses it (seen in the fault tests: "Chord ...
raised: ConnectionError", and the job never finished).

The API and the workers each hand a :class:`Dispatcher` their own Celery app; this module
only calls ``send_task`` and ``control.revoke`` on it, so it imports no Celery and no worker.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import redis

from shared.contract import JobSpec
from shared.taskqueue import (
    CPU_QUEUE,
    FETCH,
    FIT,
    REPLICATES,
    batches,
    fetch_id,
    fit_id,
    replicates_id,
    task_ids,
)

# Fits of one job go out as separate subtasks while fewer than this many wait.
PARALLEL_FITS_BELOW = 2


class Dispatcher:
    """Sends a job's subtasks through ``celery`` and reads queue lengths from ``broker``."""

    def __init__(self, celery: Any, broker: redis.Redis, *, batch_size: int):
        self.celery = celery
        self.broker = broker
        self.batch_size = batch_size

    def submit(self, job_id: str, spec: JobSpec) -> None:
        """Start a job: fetch its draws, or fit at once when the data came inline."""
        if spec.source is not None:
            self.start_fetching(job_id, spec.source.url, spec.source.draws)
        else:
            self.start_fits(job_id, spec)

    def start_fetching(
        self, job_id: str, url: str, total: int, *, only: Collection[int] | None = None
    ) -> None:
        """Send one fetch subtask per batch (or per batch in ``only``), to run in parallel
        (plain sends: a Celery group would only add overhead, since the fan-in goes through
        the job store)."""
        for i, (first, count) in enumerate(batches(total, self.batch_size)):
            if only is None or i in only:
                self.celery.send_task(
                    FETCH, args=(job_id, url, i, first, count), task_id=fetch_id(job_id, i)
                )

    def resume(
        self, job_id: str, spec: JobSpec, *, fetched: Collection[int], fitted: Collection[str]
    ) -> None:
        """Carry on a job that lost its tasks, from what the store holds: the batches not
        yet ``fetched``, or else the fits of the methods not yet ``fitted``. A fit finds
        what was saved and does only the rest: a started components test or bootstrap
        sends its missing chunks again, and a fit of every method stores the result."""
        if spec.source is not None:
            total = spec.source.draws
            missing = [i for i in range(len(batches(total, self.batch_size))) if i not in fetched]
            if missing:
                self.start_fetching(job_id, spec.source.url, total, only=missing)
                return
        methods = [method for method in spec.methods if method not in fitted]
        if methods:
            self.start_fits(job_id, spec, methods=methods)
        else:
            self._send_fit(job_id, list(spec.methods))

    def start_fits(
        self, job_id: str, spec: JobSpec, *, methods: Sequence[str] | None = None
    ) -> None:
        """Send the fits of ``methods`` (all of the job's by default): one subtask per method
        when cpu workers are free, else one in all.

        Parallel fits shorten a job only if a second worker is idle to take one; under load
        every worker is busy anyway, and one subtask per job halves the overhead. A job that
        chooses K by BIC fits in one subtask, so that K is chosen once for every method; so
        does a job with a components test, whose fit subtask starts the test first.
        """
        methods = list(spec.methods if methods is None else methods)
        split = (
            len(methods) > 1
            and not spec.chooses_components
            and spec.test_components is None
            and self.queue_length(CPU_QUEUE) < PARALLEL_FITS_BELOW
        )
        parts = [[method] for method in methods] if split else [methods]
        for part in parts:
            self._send_fit(job_id, part)

    def _send_fit(self, job_id: str, methods: list[str]) -> None:
        self.celery.send_task(FIT, args=(job_id, methods), task_id=fit_id(job_id, methods))

    def send_replicates(
        self, job_id: str, analysis: str, stage: int, chunks: Iterable[int]
    ) -> None:
        """Send chunks of one stage of an analysis; each finds its replicates in the stage's
        layout, stored with the job, and the last one saved takes the analysis on."""
        for chunk in chunks:
            self.celery.send_task(
                REPLICATES,
                args=(job_id, analysis, stage, chunk),
                task_id=replicates_id(job_id, analysis, stage, chunk),
            )

    def queue_length(self, queue: str) -> int:
        """How many messages wait in a queue: with the Redis broker, the length of a list."""
        return int(self.broker.llen(queue))

    def revoke(self, job_id: str, spec: JobSpec) -> None:
        """Ask the workers to drop the job's pending subtasks. Replicate chunks are not
        named here (their number is decided as the job runs): each checks the job's status
        before any work, so a cancelled job's waiting chunks end at once."""
        self.celery.control.revoke(task_ids(job_id, spec, batch_size=self.batch_size))
