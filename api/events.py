"""``GET /jobs/<id>/events``: a job's status and progress as Server-Sent Events.

Served by an app of its own (:func:`api.create_events_app`) under gunicorn's gevent
worker, where an open stream costs a greenlet and a Redis connection rather than one of
the API's threads. The page is served by the API's origin and reads the stream with
``fetch`` (an EventSource cannot send the Authorization header), so the streams answer
CORS: any origin, no cookies; the bearer token is what authorises.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.routing import Rule

from api import auth, extensions
from api.errors import APIError
from shared.events import (
    CHECK_SECONDS,
    KEEPALIVE,
    KEEPALIVE_SECONDS,
    EventReader,
    InvalidEventId,
    event_id_after,
)
from shared.schemas import dump_job
from shared.store import JobRecord, connect

EXTENSION = "emcoins-events"
PATH = "/jobs/<job_id>/events"
# How long a client waits before reconnecting after a dropped stream (the SSE "retry:").
RETRY_MS = 2000
# Redis connections per client of the process (redis-py's pools stop at 100 by default):
# each open stream holds one while it blocks on XREAD. Beyond it a stream ends and its
# client reconnects; Redis itself accepts 10,000 clients by default.
REDIS_CONNECTIONS = 5000
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Last-Event-ID, Accept, Cache-Control",
    "Access-Control-Max-Age": "600",
}

blp = Blueprint("events", __name__)


def render_job(record: JobRecord) -> dict[str, Any]:
    """The job exactly as ``GET /jobs/<id>`` answers it."""
    return dump_job(record.to_json())


@blp.route(PATH)
def stream(job_id: str) -> Response:
    """The job's events from the start (or after ``Last-Event-ID``), then ``done``."""
    try:
        after = event_id_after(request.headers.get("Last-Event-ID"))
    except InvalidEventId:
        raise APIError(
            422,
            "Some fields are invalid; see details.",
            details={"Last-Event-ID": "Not an event id this service gave out."},
        ) from None
    auth.job_or_404(job_id)
    reader: EventReader = current_app.extensions[EXTENSION]
    logger = current_app.logger

    def body() -> Iterator[bytes]:
        # Sent at once, so that the client has the headers even when nothing is new.
        yield f"retry: {RETRY_MS}\n\n".encode()
        try:
            for event in reader.events(job_id, after=after):
                yield KEEPALIVE if event is None else event.encode()
        except redis.RedisError as exc:
            # End the stream: the client reconnects with Last-Event-ID and loses nothing.
            logger.warning("event stream of %s ended: %s", job_id, type(exc).__name__,
                           extra={"job_id": job_id})

    return Response(
        body(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@blp.route("/healthz")
def healthz():
    """The process is up (public, as the API's own probe)."""
    return {"status": "ok", "checks": {}}


def _preflight() -> Response | None:
    # Before authentication: a browser's preflight never carries the token.
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return Response(status=204)
    return None


def _cors(response: Response) -> Response:
    # On errors too, so that the page can read a 401 or 404.
    response.headers.update(_CORS)
    return response


def document(spec, events_url: str = "") -> None:
    """Describe the endpoint in an OpenAPI description (the API's), on ``events_url``."""
    operation: dict[str, Any] = {
        "tags": ["events"],
        "summary": "Follow a job's status and progress as Server-Sent Events.",
        "description": (
            "`text/event-stream` of `status` events (`{\"status\": ...}`) and `progress` "
            "events (`{\"draws_fetched\", \"draws_total\"}`, and while a bootstrap or a "
            "components test runs `\"replicates\": {\"analysis\", \"stage\", \"done\", "
            "\"total\"}` as in the job's `progress`), each with an increasing `id`, "
            "from the job's creation; then one `done` event, without an id, whose data is "
            "the whole job as `GET /jobs/{job_id}` answers it, and the stream ends. A "
            f"comment `: keep-alive` is sent after {KEEPALIVE_SECONDS:g} s without an event. "
            "The stream ends without `done` if the job is deleted or expires. Served by "
            "the events service (EMCOINS_EVENTS_URL), not by the API's own workers."
        ),
        "parameters": [
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                "description": "Resume after this event: only later events are sent.",
            },
        ],
        "responses": {
            "200": {
                "description": "The stream.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "404": {
                "description": "No such job.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                },
            },
            "422": {
                "description": "A Last-Event-ID this service did not give out.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                },
            },
        },
    }
    if events_url:
        operation["servers"] = [{"url": events_url.rstrip("/")}]
    # ``rule`` is for flask-smorest's plugin, which builds the path from a Flask rule.
    spec.path(
        path="/jobs/{job_id}/events",
        rule=Rule(PATH),
        operations={"get": operation},
        parameters=[
            {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
    )


def init_app(app: Flask) -> None:
    """Serve the streams; call after :func:`api.extensions.init_app` and before
    :func:`api.auth.init_app` (preflights are answered before the token check)."""
    settings = app.config["SETTINGS"]
    check = float(app.config.get("EVENTS_CHECK_SECONDS", CHECK_SECONDS))
    keepalive = float(app.config.get("EVENTS_KEEPALIVE_SECONDS", KEEPALIVE_SECONDS))
    # A client of its own: XREAD blocks up to ``check`` seconds, longer than the store
    # client's socket timeout allows.
    client = connect(settings.replace(redis_timeout=settings.redis_timeout + check))
    store = app.extensions[extensions.EXTENSION].store
    # Hundreds of greenlets read at once, where the API has 16 threads.
    connections = int(app.config.get("EVENTS_REDIS_CONNECTIONS", REDIS_CONNECTIONS))
    for each in (client, store.client):
        each.connection_pool.max_connections = connections
    app.extensions[EXTENSION] = EventReader(
        store,
        client,
        render=render_job,
        keepalive_seconds=keepalive,
        check_seconds=check,
    )
    app.before_request(_preflight)
    app.after_request(_cors)
    app.register_blueprint(blp)
