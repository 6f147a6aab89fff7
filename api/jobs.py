"""The jobs resource: submit, poll and cancel estimation jobs."""

from __future__ import annotations

import math
import secrets
import uuid
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api import auth, extensions, metrics
from api.errors import APIError
from shared.contract import JobRequest
from shared.draws import aggregate_counts, parse_flip_string
from shared.limits import limit_errors
from shared.schemas import ErrorSchema, JobCreatedSchema, JobRequestSchema, JobSchema
from shared.status import JobStatus
from shared.store import JobRecord, QueueFull
from shared.taskqueue import batches

# One more second of suggested wait per this many unfinished jobs.
JOBS_PER_SECOND_OF_WAIT = 200

blp = Blueprint("jobs", __name__, url_prefix="/jobs", description="Estimation jobs.")


@blp.before_request
def _require_json() -> None:
    if request.method == "POST" and not request.is_json:
        raise APIError(415, "Send the job as JSON with Content-Type: application/json.")


def job_view(record: JobRecord) -> dict[str, Any]:
    """The polled shape of a job record."""
    return {
        "id": record.id,
        "status": record.status,
        "progress": {"draws_fetched": record.draws_fetched, "draws_total": record.draws_total},
        "result": None if record.result is None else record.result.to_json(),
        "error": None if record.error is None else record.error.to_json(),
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }


def _inline_counts(request: JobRequest) -> list[list[int]] | None:
    if request.draws is not None:
        return aggregate_counts(parse_flip_string(d, index=i) for i, d in enumerate(request.draws))
    if request.counts is not None:
        return aggregate_counts(request.counts)
    return None


def _running_headers(record: JobRecord) -> dict[str, str]:
    if record.status.is_final:
        return {}
    settings = extensions.settings()
    # The more jobs are unfinished, the longer this one has to wait: suggest a pause
    # that grows with the backlog, so thousands of clients do not poll flat out.
    backlog = extensions.store().backlog()
    seconds = min(settings.retry_after_max_seconds, math.ceil(backlog / JOBS_PER_SECOND_OF_WAIT))
    return {"Retry-After": str(max(settings.retry_after_seconds, seconds))}


@blp.route("")
class Jobs(MethodView):
    """The collection of jobs."""

    @blp.arguments(JobRequestSchema)
    @blp.response(202, JobCreatedSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="The body is not valid JSON.")
    @blp.alt_response(413, schema=ErrorSchema, description="The body is too large.")
    @blp.alt_response(415, schema=ErrorSchema, description="The body is not JSON.")
    @blp.alt_response(422, schema=ErrorSchema, description="Invalid fields, by path.")
    @blp.alt_response(
        429,
        schema=ErrorSchema,
        description="Too many unfinished jobs (EMCOINS_MAX_QUEUED); retry after Retry-After.",
        headers={"Retry-After": {"schema": {"type": "integer"}}},
    )
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def post(self, body: JobRequest):
        """Submit a job; poll the URL in ``Location`` for its result."""
        settings = extensions.settings()
        problems = limit_errors(body, settings)
        if problems:
            raise APIError(422, "Some fields are invalid; see details.", details=problems)
        # The seed is fixed here, so that the job's fits and any rerun of them agree.
        spec = body.spec(secrets.randbits(32))
        counts = _inline_counts(body)
        if counts is None:
            total = spec.source.draws
            batch_count = len(batches(total, settings.fetch_batch_size))
        else:
            total, batch_count = sum(row[2] for row in counts), 0
        job_id = str(uuid.uuid4())
        jobs = extensions.store()
        try:
            jobs.create(
                job_id,
                spec=spec,
                draws_total=total,
                counts=counts,
                owner=auth.current_owner(),
                batches_total=batch_count,
                max_unfinished=settings.max_queued,
            )
        except QueueFull:
            # Backpressure: refuse rather than let the queue and Redis grow without bound.
            raise APIError(
                429,
                f"{settings.max_queued} jobs are already queued or running "
                "(EMCOINS_MAX_QUEUED); try again later.",
                details={"max_queued": settings.max_queued},
                headers={"Retry-After": str(settings.retry_after_seconds)},
            ) from None
        try:
            extensions.dispatcher().submit(job_id, spec)
        except Exception:
            # Not queued means not accepted: leave nothing behind that would look pending.
            jobs.delete(job_id)
            raise
        metrics.job_submitted()
        current_app.logger.info("job submitted", extra={"job_id": job_id})
        url = f"/jobs/{job_id}"
        return {"id": job_id, "status": JobStatus.QUEUED, "url": url}, 202, {"Location": url}


@blp.route("/<job_id>")
class Job(MethodView):
    """One job."""

    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def get(self, job_id: str):
        """The job's status, progress and, once it succeeded, its result."""
        record = auth.job_or_404(job_id)
        return job_view(record), 200, _running_headers(record)

    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(409, schema=ErrorSchema, description="The job already finished.")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def delete(self, job_id: str):
        """Cancel a job that has not finished; cancelled is final."""
        record = auth.job_or_404(job_id)
        jobs = extensions.store()
        if not jobs.cancel(job_id):
            current = jobs.get(job_id)
            raise APIError(
                409,
                f"Job {job_id} already {current.status.value}; "
                "only unfinished jobs can be cancelled.",
                details={"status": current.status.value},
            )
        extensions.dispatcher().revoke(job_id, record.spec)
        current_app.logger.info("job cancelled", extra={"job_id": job_id})
        return job_view(jobs.get(job_id))
