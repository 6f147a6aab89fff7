"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from flask.views import MethodView
from flask_smorest import Blueprint
from kombu.exceptions import OperationalError
from marshmallow import Schema, fields

from api import extensions
from api.errors import APIError

blp = Blueprint("health", __name__, description="Probes.")


class HealthSchema(Schema):
    """The probe's answer."""

    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.route("/healthz")
class Health(MethodView):
    """Liveness."""

    @blp.response(200, HealthSchema)
    def get(self):
        """The process is up."""
        return {"status": "ok", "checks": {}}


@blp.route("/readyz")
class Ready(MethodView):
    """Readiness."""

    @blp.response(200, HealthSchema)
    @blp.alt_response(503, description="A dependency is not ready.")
    def get(self):
        """Redis answers and at least one worker replies to a ping."""
        checks = {"redis": "ok", "workers": "ok"}
        try:
            extensions.redis_client().ping()
        except redis.RedisError as exc:
            checks["redis"] = f"not answering: {type(exc).__name__}"
            checks["workers"] = "unknown: the broker is Redis"
        else:
            try:
                replies = extensions.celery().control.ping(timeout=1.0, limit=1)
            except (OperationalError, redis.RedisError) as exc:
                replies, checks["workers"] = [], f"broker error: {type(exc).__name__}"
            if not replies and checks["workers"] == "ok":
                checks["workers"] = "no worker replied to a ping within 1 s"
        if any(value != "ok" for value in checks.values()):
            failing = sorted(name for name, value in checks.items() if value != "ok")
            raise APIError(
                503,
                f"Not ready: {', '.join(failing)}.",
                code="not_ready",
                details=checks,
                headers={"Retry-After": str(extensions.settings().retry_after_seconds)},
            )
        return {"status": "ok", "checks": checks}
