"""Pictures of finished jobs: the heads fractions' histogram with the fitted mixtures over it."""

from __future__ import annotations

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api import auth, extensions
from api.errors import APIError
from shared.schemas import ErrorSchema
from shared.status import JobStatus
from shared.store import JobRecord

blp = Blueprint("plots", __name__, url_prefix="/jobs", description="Plots of finished jobs.")

_MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def _binary(media_type: str) -> dict:
    """OpenAPI content of an image response (flask-smorest only writes it for schemas)."""
    return {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


def plot_bytes(record: JobRecord, fmt: str) -> bytes:
    """The job's plot, drawn on first request and kept in Redis as long as the job."""
    jobs = extensions.store()
    cached = jobs.cached_plot(record.id, fmt)
    if cached is not None:
        return cached
    # matplotlib is imported on the first plot a process draws, not when the API starts.
    from shared import plotting

    result = record.result.to_json() if record.result is not None else {}
    image = jobs.keep_plot(record, fmt, plotting.render(record.counts or [], result, fmt))
    current_app.logger.info("plot drawn", extra={"job_id": record.id, "format": fmt})
    return image


def _plot(job_id: str, fmt: str) -> Response:
    record = auth.job_or_404(job_id)
    if record.status is not JobStatus.SUCCEEDED:
        raise APIError(
            409,
            f"Job {job_id} is {record.status.value}; it has a plot once it succeeded.",
            details={"status": record.status.value},
        )
    response = Response(plot_bytes(record, fmt), mimetype=_MEDIA_TYPES[fmt])
    # A succeeded job never changes, so neither does its picture.
    response.headers["Cache-Control"] = "private, max-age=3600, immutable"
    return response


@blp.route("/<job_id>/plot.png")
class PlotPng(MethodView):
    """The plot as PNG."""

    @blp.response(200, content_type="image/png", description="The plot (PNG).")
    @blp.doc(responses={"200": _binary("image/png")})
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(409, schema=ErrorSchema, description="The job has not succeeded.")
    def get(self, job_id: str):
        """Histogram of heads fraction per draw, each method's fitted mixture drawn over it."""
        return _plot(job_id, "png")


@blp.route("/<job_id>/plot.svg")
class PlotSvg(MethodView):
    """The plot as SVG."""

    @blp.response(200, content_type="image/svg+xml", description="The plot (SVG).")
    @blp.doc(responses={"200": _binary("image/svg+xml")})
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(409, schema=ErrorSchema, description="The job has not succeeded.")
    def get(self, job_id: str):
        """The same plot as scalable vector graphics."""
        return _plot(job_id, "svg")
