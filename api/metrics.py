"""``GET /metrics`` for Prometheus.

The figures live in Redis (:mod:`shared.metrics`), so whichever gunicorn process answers
the scrape reports the whole service's counts. Finished jobs are counted by the job
store's final transition; submissions are counted as the API accepts them
(api/extensions.py).
"""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api import extensions
from shared.metrics import RedisCollector

blp = Blueprint("metrics", __name__, description="Monitoring.")


@blp.route("/metrics")
class Scrape(MethodView):
    """Prometheus scrape target."""

    @blp.response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text format.")
    @blp.doc(responses={"200": {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Jobs submitted and finished, job and fetch durations, Celery queue depths."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RedisCollector(extensions.redis_client()))
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
