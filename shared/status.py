"""Job status values, stored as strings in the job's Redis hash."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    FETCHING = "fetching"
    FITTING = "fitting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True once nothing can change the job any more."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
RUNNING_STATUSES = frozenset(JobStatus) - FINAL_STATUSES


class ErrorCode(StrEnum):
    """Codes recorded on a failed job, or on one method of a job (``result.errors``)."""

    SOURCE_UNAVAILABLE = "source_unavailable"
    INVALID_DRAWS = "invalid_draws"
    FIT_FAILED = "fit_failed"
    WORKER_ERROR = "worker_error"
    # A method that cannot take this many draws (the GMM baseline expands its counts).
    TOO_MANY_DRAWS = "too_many_draws"
