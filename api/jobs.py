"""The jobs resource: submit, poll and cancel estimation jobs."""

from __future__ import annotations

import math
import secrets
import uuid
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from api import auth, extensions, metrics
from api.errors import APIError
from shared.draws import aggregate_counts, parse_flip_string
from shared.limits import limit_errors
from shared.schemas import ErrorSchema, JobCreatedSchema, JobRequestSchema, JobSchema
from shared.status import JobStatus
from shared.store import JobRecord
from workers import canvas

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
        "result": record.result,
        "error": record.error,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }


def _spec(data: dict[str, Any]) -> dict[str, Any]:
    """What the workers need to run the job, with the seed fixed so reruns agree."""
    seed = data["seed"] if data["seed"] is not None else secrets.randbits(32)
    return {
        "source": data.get("source"),
        "n_components": data["n_components"],
        "max_components": data["max_components"],
        "weights": data["weights"],
        "restarts": data["restarts"],
        "methods": list(data["methods"]),
        "seed": seed,
    }


def _inline_counts(data: dict[str, Any]) -> list[list[int]] | None:
    if "draws" in data:
        return aggregate_counts(parse_flip_string(d, index=i) for i, d in enumerate(data["draws"]))
    if "counts" in data:
        return aggregate_counts(data["counts"])
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
    def post(self, data: dict[str, Any]):
        """Submit a job; poll the URL in ``Location`` for its result."""
        settings = extensions.settings()
        problems = limit_errors(data, settings)
        if problems:
            raise APIError(422, "Some fields are invalid; see details.", details=problems)
        jobs = extensions.store()
        if jobs.unfinished_count() >= settings.max_queued:
            # Backpressure: refuse rather than let the queue and Redis grow without bound.
            raise APIError(
                429,
                f"{settings.max_queued} jobs are already queued or running "
                "(EMCOINS_MAX_QUEUED); try again later.",
                details={"max_queued": settings.max_queued},
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        spec = _spec(data)
        counts = _inline_counts(data)
        total = spec["source"]["draws"] if counts is None else sum(row[2] for row in counts)
        job_id = str(uuid.uuid4())
        batch_size = settings.fetch_batch_size
        batch_count = 0 if counts is not None else len(canvas.batches(total, batch_size))
        jobs.create(
            job_id,
            spec=spec,
            draws_total=total,
            counts=counts,
            owner=auth.current_owner(),
            batches_total=batch_count,
        )
        try:
            canvas.submit(job_id, spec, batch_size=settings.fetch_batch_size)
        except Exception:
            # Not queued means not accepted: leave nothing behind that would look pending.
            jobs.delete(job_id)
            raise
        metrics.job_submitted(job_id)
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
        canvas.revoke(job_id, record.spec, batch_size=extensions.settings().fetch_batch_size)
        metrics.job_cancelled(job_id)
        return job_view(jobs.get(job_id))
