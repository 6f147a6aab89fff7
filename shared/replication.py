"""Waiting for a replica before a write counts as done (Redis WAIT).

Redis replicates asynchronously: a master that dies right after acknowledging a write can
take the write with it, and the replica the sentinels promote never saw it. Where losing
a write matters (the API's 202 for a new job, a job's final status), the write is followed
by ``WAIT <replicas> <timeout>`` on the same connection, since WAIT covers what that
connection wrote; the replication stream is ordered, so it also covers every write the
master made before, on any connection (the job's Celery messages among them).

Only with sentinels (``EMCOINS_REDIS_SENTINELS``) is there a replica to wait for; a single
Redis pays nothing. When no replica acknowledges in time (it is down, or it was promoted
and nothing replicates from it yet), the write still counts: the service stays up on one
node, as it did before replicas. The wait is then skipped for :data:`PAUSE_SECONDS`, so
that every write does not pay the full timeout while the replica is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from shared.config import Settings

log = logging.getLogger(__name__)

# After a WAIT no replica answered, writes go on without waiting for this long.
PAUSE_SECONDS = 5.0


class Replication:
    """Runs one write and then WAITs for ``replicas`` replicas, up to ``timeout_ms``."""

    def __init__(self, replicas: int = 0, *, timeout_ms: int = 500):
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._paused_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Replication:
        """One replica with sentinels, none without; the wait ends well inside the socket
        timeout (WAIT blocks the connection, and a read timeout would be an error)."""
        replicas = 1 if settings.redis_sentinels else 0
        timeout_ms = max(1, min(500, int(settings.redis_timeout * 500)))
        return cls(replicas, timeout_ms=timeout_ms)

    def write(self, client: redis.Redis, command: Callable[[Any], Any]) -> Any:
        """``command(client)``'s reply; with replicas, ``command`` is given a pipeline
        instead, and its one reply is returned once a replica has it (or the wait ended)."""
        if self.replicas == 0 or time.monotonic() < self._paused_until:
            return command(client)
        with client.pipeline(transaction=False) as pipe:
            command(pipe)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            reply, acknowledged = pipe.execute()
        if int(acknowledged) < self.replicas:
            self._paused_until = time.monotonic() + PAUSE_SECONDS
            log.warning(
                "%d of %d replicas acknowledged a write within %d ms; going on without "
                "waiting for %.0f s",
                acknowledged, self.replicas, self.timeout_ms, PAUSE_SECONDS,
            )
        return reply
