"""The jobs resource: submit, list, poll, cancel and delete estimation jobs."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import uuid
from typing import Any

from flask import current_app, request
from flask.views import MethodView

from api import auth, extensions
from api.body import Blueprint
from api.errors import APIError
from api.tables import csv_response, json_or_csv, wants_csv
from shared.contract import JobRequest
from shared.draws import aggregate_counts, parse_flip_string
from shared.limits import distinct_pairs_error, limit_errors
from shared.schemas import (
    DrawCountsSchema,
    ErrorSchema,
    JobCreatedSchema,
    JobListArgsSchema,
    JobListSchema,
    JobRequestSchema,
    JobSchema,
)
from shared.status import JobStatus
from shared.store import (
    Idempotency,
    IdempotencyKeyReused,
    JobRecord,
    JobSummary,
    QueueFull,
    Replayed,
)
from shared.taskqueue import batches

# One more second of suggested wait per this many unfinished jobs.
JOBS_PER_SECOND_OF_WAIT = 200

blp = Blueprint("jobs", __name__, url_prefix="/jobs", description="Estimation jobs.")


@blp.before_request
def _require_json() -> None:
    # Only a new job has a body; POST /jobs/<id>/cancel has none.
    if request.method == "POST" and request.endpoint == "jobs.Jobs" and not request.is_json:
        raise APIError(415, "Send the job as JSON with Content-Type: application/json.")


def job_view(record: JobRecord) -> dict[str, Any]:
    """The polled shape of a job record."""
    return record.to_json()


def _inline_counts(request: JobRequest) -> list[list[int]] | None:
    if request.draws is not None:
        return aggregate_counts(parse_flip_string(d, index=i) for i, d in enumerate(request.draws))
    if request.counts is not None:
        return aggregate_counts(request.counts)
    return None


def _suggested_wait() -> int:
    """Seconds a client should wait before polling: the more jobs are unfinished, the
    longer, so that thousands of clients do not poll flat out."""
    settings = extensions.settings()
    backlog = extensions.store().backlog()
    seconds = min(settings.retry_after_max_seconds, math.ceil(backlog / JOBS_PER_SECOND_OF_WAIT))
    return max(settings.retry_after_seconds, seconds)


def _running_headers(record: JobRecord) -> dict[str, str]:
    return {} if record.status.is_final else {"Retry-After": str(_suggested_wait())}


_HEADER_DOCS = {
    "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
    "Retry-After": {
        "description": "Seconds to wait before polling; grows with the backlog.",
        "schema": {"type": "integer"},
    },
}
_EXAMPLES = {
    "source": {
        "summary": "Draws fetched from a draw source",
        "value": {"source": {"url": "http://127.0.0.1:8001/draw", "draws": 30}},
    },
    "draws": {
        "summary": "Inline flip strings (the paper's five draws)",
        "value": {
            "draws": ["HTTTHHTHTH", "HHHHTHHHHH", "HTHHHHHTHH", "HTHTTTHHTT", "THHHTHHHTH"],
            "n_components": 2,
            "seed": 1,
        },
    },
    "counts": {
        "summary": "Inline counts, with a multiplicity column, K chosen by BIC",
        "value": {"counts": [[2, 12, 24], [6, 12, 1343], [10, 12, 181]],
                  "n_components": "auto", "max_components": 3},
    },
    "bootstrap": {
        "summary": "95% bootstrap intervals for EM's thetas and weights (2,000 refits)",
        "value": {"counts": [[3, 10, 120], [4, 10, 160], [7, 10, 150], [8, 10, 110]],
                  "methods": ["em"], "seed": 7,
                  "bootstrap": {"replicates": 2000, "kind": "nonparametric", "level": 0.95}},
    },
    "test_components": {
        "summary": "K chosen by a bootstrap likelihood-ratio test of k against k+1 coins",
        "value": {"counts": [[3, 10, 120], [4, 10, 160], [7, 10, 150], [8, 10, 110]],
                  "n_components": "auto", "seed": 7,
                  "test_components": {"max_components": 4, "replicates": 99}},
    },
}
_IDEMPOTENCY_KEY = "Idempotency-Key"


def _idempotency(body: JobRequest) -> Idempotency | None:
    """The request's Idempotency-Key as stored (a digest), with its request's fingerprint."""
    key = request.headers.get(_IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise APIError(
            422,
            "Some fields are invalid; see details.",
            details={_IDEMPOTENCY_KEY: "Must be 1 to 255 printable ASCII characters."},
        )
    return Idempotency(
        key_digest=hashlib.sha256(key.encode()).hexdigest(), fingerprint=body.fingerprint()
    )


def _created(job_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    url = f"/jobs/{job_id}"
    headers = {"Location": url, "Retry-After": str(_suggested_wait())}
    return {"id": job_id, "status": JobStatus.QUEUED, "url": url}, 202, headers


@blp.route("")
class Jobs(MethodView):
    """The collection of jobs."""

    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobListSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Invalid parameters, by name.")
    def get(self, args: dict[str, Any]):
        """The caller's jobs, newest first, a page at a time (filter with ``status``)."""
        after = _decode_page_token(args["page_token"])
        summaries, cursor = extensions.store().list_jobs(
            auth.current_owner(),
            page_size=args["page_size"],
            after=after,
            status=args.get("status"),
        )
        return {
            "jobs": [_summary_view(summary) for summary in summaries],
            "next_page_token": "" if cursor is None else _encode_page_token(cursor),
        }

    @blp.arguments(JobRequestSchema, examples=_EXAMPLES)
    @blp.response(202, JobCreatedSchema, headers=_HEADER_DOCS)
    @blp.alt_response(400, schema=ErrorSchema, description="The body is not valid JSON.")
    @blp.alt_response(413, schema=ErrorSchema, description="The body is too large.")
    @blp.alt_response(415, schema=ErrorSchema, description="The body is not JSON.")
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="Invalid fields, by path; or an Idempotency-Key used for another request "
        "(code idempotency_key_reused).",
    )
    @blp.alt_response(
        429,
        schema=ErrorSchema,
        description="Too many unfinished jobs (EMCOINS_MAX_QUEUED); retry after Retry-After.",
        headers={"Retry-After": {"schema": {"type": "integer"}}},
    )
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    @blp.doc(parameters=[{
        "name": _IDEMPOTENCY_KEY,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "The same key with the same body returns the same job, not a second "
        "one (draft-ietf-httpapi-idempotency-key-header); keys are per caller and expire "
        "with their job.",
    }])
    def post(self, body: JobRequest):
        """Submit a job; poll the URL in ``Location`` for its result."""
        settings = extensions.settings()
        problems = limit_errors(body, settings)
        if problems:
            raise APIError(422, "Some fields are invalid; see details.", details=problems)
        counts = _inline_counts(body)
        if counts is not None and (problems := distinct_pairs_error(body, len(counts))):
            raise APIError(422, "Some fields are invalid; see details.", details=problems)
        idempotency = _idempotency(body)
        # The seed is fixed here, so that the job's fits and any rerun of them agree.
        spec = body.spec(secrets.randbits(32))
        if counts is None:
            total = spec.source.draws
            batch_count = len(batches(total, settings.fetch_batch_size))
        else:
            total, batch_count = sum(row[2] for row in counts), 0
        jobs = extensions.store()
        try:
            job_id = jobs.create(
                str(uuid.uuid4()),
                spec=spec,
                draws_total=total,
                counts=counts,
                owner=auth.current_owner(),
                batches_total=batch_count,
                max_unfinished=settings.max_queued,
                idempotency=idempotency,
            )
        except Replayed as replay:
            extensions.resend_if_queued(replay.job_id)
            return _created(replay.job_id)
        except IdempotencyKeyReused:
            raise APIError(
                422,
                f"This {_IDEMPOTENCY_KEY} was used for a different request; use a new key.",
                code="idempotency_key_reused",
                details={_IDEMPOTENCY_KEY: "Used before with another body."},
            ) from None
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
        # With sentinels, the 202 waits until a replica has the job (README: Scaling past
        # one machine); a failover before then is a 503, retried with the same key.
        extensions.count_submitted()
        current_app.logger.info("job submitted", extra={"job_id": job_id})
        return _created(job_id)


@blp.route("/<job_id>")
class Job(MethodView):
    """One job."""

    @blp.response(200, JobSchema, headers={"Retry-After": _HEADER_DOCS["Retry-After"]})
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def get(self, job_id: str):
        """The job's status, progress, spec and, once it succeeded, its result."""
        record = auth.job_or_404(job_id)
        return job_view(record), 200, _running_headers(record)

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def delete(self, job_id: str):
        """Delete the job and everything kept for it, cancelling it first if unfinished."""
        record = auth.job_or_404(job_id)
        jobs = extensions.store()
        if jobs.cancel(job_id):
            extensions.dispatcher().revoke(job_id, record.spec)
        jobs.delete(job_id)
        current_app.logger.info("job deleted", extra={"job_id": job_id})
        return "", 204


@blp.route("/<job_id>/cancel")
class Cancel(MethodView):
    """Cancelling a job."""

    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(409, schema=ErrorSchema, description="The job already finished.")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def post(self, job_id: str):
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


@blp.route("/<job_id>/draws")
class Draws(MethodView):
    """A job's draws."""

    @blp.response(200, DrawCountsSchema)
    @blp.doc(**json_or_csv("DrawCounts"))
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(409, schema=ErrorSchema, description="The draws are still being fetched.")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is not answering.")
    def get(self, job_id: str):
        """The job's draws as aggregated ``[heads, flips, count]`` rows; CSV with
        ``Accept: text/csv``."""
        record = auth.job_or_404(job_id)
        if record.counts is None:
            raise APIError(
                409,
                f"Job {job_id} is {record.status.value}; its draws are not all fetched yet.",
                details={"status": record.status.value},
                headers=_running_headers(record),
            )
        if wants_csv():
            return csv_response(("heads", "flips", "count"), record.counts, f"{job_id}-draws")
        return {"counts": record.counts}


def _summary_view(summary: JobSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "url": f"/jobs/{summary.id}",
        "status": summary.status,
        "progress": {"draws_fetched": summary.draws_fetched, "draws_total": summary.draws_total},
        "created_at": summary.created_at,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
    }


def _encode_page_token(cursor: tuple[int, str]) -> str:
    raw = json.dumps([cursor[0], cursor[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> tuple[int, str] | None:
    """The cursor a page token names; a 422 at ``page_token`` if it names none."""
    if not token:
        return None
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if type(created) is not int or not isinstance(job_id, str):
            raise ValueError(token)
    except (ValueError, TypeError):
        raise APIError(
            422,
            "Some fields are invalid; see details.",
            details={"page_token": "Not a page token this API gave out."},
        ) from None
    return created, job_id
