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


def job_parts(job_id: str) -> str:
    """Hash of each method's fit result, by method: ``emcoins:job:<id>:parts``."""
    return f"{PREFIX}:job:{_checked(job_id)}:parts"


def unfinished_jobs() -> str:
    """Sorted set of the ids of jobs not yet finished, scored by creation time."""
    return f"{PREFIX}:jobs:unfinished"


def job_plot(job_id: str, fmt: str) -> str:
    """Cached bytes of a finished job's plot: ``emcoins:job:<id>:plot:<fmt>``."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"plot format {fmt!r} is not png or svg")
    return f"{PREFIX}:job:{_checked(job_id)}:plot:{fmt}"


def metric_counters() -> str:
    """Hash of the service's counters, field per label set: ``emcoins:metrics:counters``."""
    return f"{PREFIX}:metrics:counters"


def metric_histogram(name: str) -> str:
    """Hash of one histogram's bucket counts, sum and count: ``emcoins:metrics:hist:<name>``."""
    if not name or ":" in name:
        raise ValueError(f"metric name {name!r} cannot name a Redis key")
    return f"{PREFIX}:metrics:hist:{name}"
