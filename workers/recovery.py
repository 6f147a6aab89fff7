"""The workers' sweep for jobs no task carries any more (see :mod:`shared.recovery`).

Every worker runs a :class:`RecoveryLoop` thread (started by :class:`RecoveryStep`); they
take turns through a lock in Redis, so the service sweeps about once per
``recovery_interval`` however many workers run. A job found lost is given its next tasks
from what the store holds (:meth:`shared.dispatch.Dispatcher.resume`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import redis
from celery import bootsteps

from shared.config import Settings, get_settings
from shared.dispatch import Dispatcher
from shared.metrics import Metrics
from shared.recovery import Orphans, Sweep
from shared.store import JobStore, connect
from workers.results import running_record

log = logging.getLogger(__name__)


class RecoveryLoop:
    """Tries to take the next sweep twice per interval, until stopped."""

    def __init__(self, client: redis.Redis, dispatcher: Dispatcher, settings: Settings):
        self.interval = settings.recovery_interval
        self.ttl_seconds = settings.job_ttl_seconds
        self.store = JobStore(client, ttl_seconds=settings.job_ttl_seconds)
        self.orphans = Orphans(client)
        self.metrics = Metrics(client)
        self.dispatcher = dispatcher
        self.token = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, celery: Any, settings: Settings) -> RecoveryLoop:
        """A loop on its own Redis client, sending through the worker's Celery app."""
        client = connect(settings)
        return cls(client, Dispatcher(celery, client, batch_size=settings.fetch_batch_size),
                   settings)

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="recovery-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the sweep in progress, if any."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def run(self) -> None:
        """Sweep when this worker's turn comes; failures are logged, never end the loop."""
        while not self._stopping.wait(self.interval / 2):
            try:
                if self.orphans.claim(self.token, self.interval):
                    self.sweep_once()
            except redis.RedisError as exc:
                log.warning("recovery: Redis not answering (%s)", exc)
            except Exception:
                log.exception("recovery: the sweep failed")

    def sweep_once(self) -> Sweep:
        """One sweep, and the tasks of every job it found lost sent again."""
        found = self.orphans.sweep(interval_seconds=self.interval, ttl_seconds=self.ttl_seconds)
        if found.skipped:
            log.info("recovery: too many tasks waiting to read them all; sweep skipped")
        for job_id in found.lost:
            self.resume(job_id)
        return found

    def resume(self, job_id: str) -> None:
        """Send a lost job's next tasks, from what its store holds."""
        record = running_record(self.store, job_id)
        if record is None:
            return
        self.dispatcher.resume(
            job_id,
            record.spec,
            fetched=self.store.fetched_batches(job_id),
            fitted=self.store.fitted_methods(job_id),
        )
        self.metrics.job_resumed()
        log.warning(
            "job %s was carried by no task (lost with a Redis master?); its next tasks "
            "were sent again", job_id, extra={"job_id": job_id, "status": record.status.value},
        )


class RecoveryStep(bootsteps.StartStopStep):
    """Runs a :class:`RecoveryLoop` in every worker, unless ``recovery_interval`` is 0."""

    requires = ("celery.worker.components:Pool",)

    def include_if(self, worker: Any) -> bool:
        return get_settings().recovery_interval > 0

    def create(self, worker: Any) -> RecoveryLoop:
        return RecoveryLoop.from_settings(worker.app, get_settings())
