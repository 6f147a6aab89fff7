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


def job_replicates(job_id: str) -> str:
    """Hash of the replicates of a job's analyses, one field per chunk saved:
    ``emcoins:job:<id>:replicates``."""
    return f"{PREFIX}:job:{_checked(job_id)}:replicates"


def job_analyses(job_id: str) -> str:
    """Hash of what a job's analyses keep between their steps (each stage's reference fits
    and chunk layout, chunks saved per stage, the stages' outcomes):
    ``emcoins:job:<id>:analyses``."""
    return f"{PREFIX}:job:{_checked(job_id)}:analyses"


def unfinished_jobs() -> str:
    """Sorted set of the ids of jobs not yet finished, scored by creation time."""
    return f"{PREFIX}:jobs:unfinished"


def recovery_lock() -> str:
    """The claim on the next sweep for jobs no task carries (one sweep per interval)."""
    return f"{PREFIX}:recovery:lock"


def recovery_suspects() -> str:
    """Set of the job ids the last sweep found carried by no task."""
    return f"{PREFIX}:recovery:suspects"


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


def _owner(owner: str | None) -> str:
    # Owners are "sha256:<hex>" (a token's digest) or None when tokens are off.
    if owner is None:
        return "public"
    kind, _, digest = owner.partition(":")
    if kind != "sha256" or not digest.isalnum():
        raise ValueError(f"owner {owner!r} cannot name a Redis key")
    return f"sha256-{digest}"


def owner_jobs(owner: str | None) -> str:
    """Sorted set of an owner's job ids by creation time (ms): ``emcoins:owner:<o>:jobs``.

    Its members do not expire by themselves: expired ids are pruned when it is written
    and when it is listed."""
    return f"{PREFIX}:owner:{_owner(owner)}:jobs"


def idempotency(owner: str | None, key_digest: str) -> str:
    """The job an ``Idempotency-Key`` made, per owner: ``emcoins:owner:<o>:idem:<digest>``."""
    if not key_digest.isalnum():
        raise ValueError(f"key digest {key_digest!r} cannot name a Redis key")
    return f"{PREFIX}:owner:{_owner(owner)}:idem:{key_digest}"


def job_events(job_id: str) -> str:
    """Stream of a job's status and progress events: ``emcoins:job:<id>:events``."""
    return f"{PREFIX}:job:{_checked(job_id)}:events"


def webhooks_due() -> str:
    """Sorted set of job ids whose completion callback is due, by due time (ms)."""
    return f"{PREFIX}:webhooks:due"
