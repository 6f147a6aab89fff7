"""A job's last step, shared by the fit tasks and the replicate chunks: merge its parts (and
the components test's outcome) into its result, once."""

from __future__ import annotations

from shared.contract import COMPONENTS_TEST, ComponentsTestResult, JobError, JobResult
from shared.status import ErrorCode
from shared.store import JobNotFound, JobRecord, JobStore

# Where a components test that could not run keeps its error, beside its outcome.
TEST_ERROR = f"{COMPONENTS_TEST}_error"


def running_record(jobs: JobStore, job_id: str) -> JobRecord | None:
    """The job's record, or None if it expired or already finished (or was cancelled)."""
    try:
        record = jobs.get(job_id)
    except JobNotFound:
        return None
    return None if record.status.is_final else record


def store_result(jobs: JobStore, record: JobRecord) -> None:
    """Merge the methods' parts into the job's result once every part is in."""
    parts = jobs.parts(record.id)
    methods = record.spec.methods
    if not all(method in parts for method in methods):
        return
    test = error = None
    if record.spec.test_components is not None:
        outcome = jobs.outcome(record.id, COMPONENTS_TEST)
        test = None if outcome is None else ComponentsTestResult.from_json(outcome)
        failure = jobs.outcome(record.id, TEST_ERROR)
        error = None if failure is None else JobError.from_json(failure)
    result = JobResult.merge([parts[m] for m in methods], components_test=test, test_error=error)
    if result.failed:
        # No method gave an estimate: the job fails with each method's reason.
        reasons = "; ".join(f"{m}: {e.message}" for m, e in result.errors.items())
        jobs.fail(record.id, JobError(
            code=ErrorCode.FIT_FAILED.value,
            message=f"every method failed: {reasons}",
            details={m: e.to_json() for m, e in result.errors.items()},
        ))
    else:
        jobs.succeed(record.id, result)
