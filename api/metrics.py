"""``GET /metrics`` for Prometheus, and one log line per request.

The figures live in Redis (:mod:`shared.metrics`), so whichever gunicorn process answers
the scrape reports the whole service's counts.
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api import extensions
from shared import logs
from shared.metrics import Metrics, RedisCollector

blp = Blueprint("metrics", __name__, description="Monitoring.")


def metrics() -> Metrics:
    """The recorder writing to the app's Redis."""
    return Metrics(extensions.store().client, ttl_seconds=extensions.settings().job_ttl_seconds)


def job_submitted(job_id: str) -> None:
    """Count an accepted job and log it with its id."""
    metrics().job_submitted()
    current_app.logger.info("job submitted", extra={"job_id": job_id})


def job_cancelled(job_id: str) -> None:
    """Count a job the API just cancelled."""
    metrics().job_finished_by_id(extensions.store(), job_id)
    current_app.logger.info("job cancelled", extra={"job_id": job_id})


@blp.route("/metrics")
class Scrape(MethodView):
    """Prometheus scrape target."""

    @blp.response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text format.")
    @blp.doc(responses={"200": {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Jobs submitted and finished, job and fetch durations, Celery queue depths."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RedisCollector(extensions.store().client))
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _start_request() -> None:
    g.emcoins_started = time.perf_counter()
    job_id = (request.view_args or {}).get("job_id")
    g.emcoins_job_token = logs.current_job.set(job_id)


def _log_request(response: Response) -> Response:
    started = g.get("emcoins_started")
    if started is not None and request.path != "/metrics":
        current_app.logger.info(
            "%s %s %s", request.method, request.path, response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
    return response


def _end_request(exc: BaseException | None) -> None:
    token = g.pop("emcoins_job_token", None)
    if token is not None:
        logs.current_job.reset(token)


def init_app(app: Flask) -> None:
    """Structured logs in the configured format, and a line per request with its job id."""
    logs.configure(app.config["SETTINGS"].log_format)
    app.before_request(_start_request)
    app.after_request(_log_request)
    app.teardown_request(_end_request)
