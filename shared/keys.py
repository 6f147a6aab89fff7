"""The one builder of Redis key names; no module joins keys by hand."""

from __future__ import annotations

PREFIX = "emcoins"


def _checked(job_id: str) -> str:
    # An empty or colon-bearing id would alias another job's keys (rq once wrote rq:job::<id>).
    if not job_id or ":" in job_id:
        raise ValueError(f"job id {job_id!r} cannot name a Redis key")
    return job_id


def job(job_id: str) -> str:
    """Hash holding one job's record: ``emcoins:job:<id>``."""
    return f"{PREFIX}:job:{_checked(job_id)}"


def job_draws(job_id: str) -> str:
    """Hash of fetched draws per batch index: ``emcoins:job:<id>:draws``."""
    return f"{PREFIX}:job:{_checked(job_id)}:draws"


def unfinished_jobs() -> str:
    """Sorted set of the ids of jobs not yet finished, scored by creation time."""
    return f"{PREFIX}:jobs:unfinished"
