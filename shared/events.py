"""A job's events, read from its Redis stream for Server-Sent Events.

The store's scripts append to ``emcoins:job:<id>:events`` (:func:`shared.keys.job_events`)
in the same step as the change they announce: a ``status`` entry when the job is created
and at each status change, a ``progress`` entry for each batch of draws fetched and as the
replicates of a bootstrap or components test are done (the job's ``progress``). This
module turns those entries into events and decides when a stream ends: after the final
status, with a ``done`` event carrying the whole job, or as soon as the job's record is
gone (deleted or expired), so that a stream never outlives its job. No Flask here:
:mod:`api.events` serves it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from shared.replies import text
from shared.status import JobStatus
from shared.store import JobNotFound, JobRecord, JobStore, ReplicateProgress

# A comment line goes out after this many seconds without an event, so that proxies and
# clients can tell a quiet stream from a dead one.
KEEPALIVE_SECONDS = 15.0
# The longest one XREAD blocks: a deleted or expired job's stream ends within this long.
CHECK_SECONDS = 5.0
# Entries read per XREAD (a job of 10,000 draws in batches of 30 has about 340).
READ_COUNT = 100
# The stream id to read after when a client sends no Last-Event-ID: the start.
START = "0-0"
# The wire form of a keep-alive: an SSE comment, which clients ignore.
KEEPALIVE = b": keep-alive\n\n"

_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class InvalidEventId(ValueError):
    """A Last-Event-ID that is not an id this service gave out."""


def event_id_after(value: str | None) -> str:
    """The stream id to read after: ``Last-Event-ID`` as sent, or the start without one."""
    if value is None or not value.strip():
        return START
    value = value.strip()
    if not _STREAM_ID.fullmatch(value):
        raise InvalidEventId(value)
    return value


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: ``status``, ``progress`` or ``done``."""

    name: str
    data: dict[str, Any]
    # The Redis stream id of the entry; ``done`` has none (it is not an entry).
    id: str | None = None

    def encode(self) -> bytes:
        """The event in the ``text/event-stream`` format (JSON data on one line)."""
        lines = [] if self.id is None else [f"id: {self.id}"]
        lines += [f"event: {self.name}", "data: " + json.dumps(self.data, separators=(",", ":"))]
        return ("\n".join(lines) + "\n\n").encode()


def entry_event(entry_id: str, fields: dict[str, str]) -> Event | None:
    """The event of one stream entry; None for an entry of a kind this version does not know."""
    kind = fields.get("type")
    if kind == "status":
        try:
            status = JobStatus(fields.get("status", ""))
        except ValueError:
            return None
        return Event("status", {"status": status.value}, entry_id)
    if kind == "progress":
        try:
            data: dict[str, Any] = {"draws_fetched": int(fields["draws_fetched"]),
                                    "draws_total": int(fields["draws_total"])}
            replicates = ReplicateProgress.from_fields(fields)
        except (KeyError, ValueError):
            return None
        if replicates is not None:
            data["replicates"] = replicates.to_json()
        return Event("progress", data, entry_id)
    return None


class EventReader:
    """Follows job event streams with blocking reads.

    ``client`` blocks on XREAD for up to ``check_seconds``: its socket timeout must be
    longer than that (see :func:`api.events.init_app`), unlike the store's client.
    """

    def __init__(
        self,
        store: JobStore,
        client: redis.Redis,
        *,
        render: Callable[[JobRecord], dict[str, Any]],
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        check_seconds: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.client = client
        self.render = render
        self.keepalive_seconds = keepalive_seconds
        self.check_seconds = check_seconds
        self.clock = clock

    def events(self, job_id: str, *, after: str = START) -> Iterator[Event | None]:
        """The job's events after stream id ``after``, ending with ``done`` (the whole job,
        as ``render`` makes it) once the job is final; None each time a keep-alive is due.

        Ends without ``done`` when the job's record is gone. Redis errors propagate.
        """
        key = keys.job_events(job_id)
        quiet_since = self.clock()
        while True:
            status = self.store.status(job_id)
            if status is None:
                return
            block = None
            if not status.is_final:
                # XREAD's BLOCK 0 means for ever: wait at least a millisecond.
                until_keepalive = self.keepalive_seconds - (self.clock() - quiet_since)
                block = max(1, int(min(self.check_seconds, until_keepalive) * 1000))
            reply = self.client.xread({key: after}, count=READ_COUNT, block=block)
            entries = reply[0][1] if reply else []
            for raw_id, raw_fields in entries:
                after = text(raw_id)
                event = entry_event(after, {text(k): text(v) for k, v in raw_fields.items()})
                if event is None:
                    continue
                yield event
                quiet_since = self.clock()
                if event.name == "status" and JobStatus(event.data["status"]).is_final:
                    yield from self._done(job_id)
                    return
            if status.is_final and not entries:
                # Every entry was read (or the job predates its stream): the job as it ended.
                yield from self._done(job_id)
                return
            if not entries and self.clock() - quiet_since >= self.keepalive_seconds:
                yield None
                quiet_since = self.clock()

    def _done(self, job_id: str) -> Iterator[Event]:
        try:
            record = self.store.get(job_id)
        except JobNotFound:
            return
        yield Event("done", self.render(record))
