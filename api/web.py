"""The page: ``GET /``, and ``GET /jobs/<id>`` when the client prefers HTML.

Plain HTML, CSS and JavaScript from ``api/templates`` and ``api/static``; the page talks
to the same JSON API as any other client. A job's address opens the page on that job, so
a link can be shared: a browser's navigation (``Accept: text/html...``) gets the page,
every other client the JSON, as before.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, render_template, request

from api import auth, extensions
from shared.methods import METHODS
from shared.status import FINAL_STATUSES

blp = Blueprint("web", __name__)

# The endpoint of ``GET /jobs/<id>`` (api/jobs.py, class Job), whose address is the page's too.
JOB_ENDPOINT = "jobs.Job"


def _csp(events_url: str) -> str:
    """The page's Content-Security-Policy: its own scripts and styles only."""
    connect = ["'self'"]
    if events_url:
        parts = urlsplit(events_url)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join((
        "default-src 'self'",
        # Plots fetched with a token are shown (and downloads offered) from blob: URLs.
        "img-src 'self' blob:",
        f"connect-src {' '.join(connect)}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


def page() -> Response:
    """The page; it reads the job to open, if any, from its own address."""
    settings = extensions.settings()
    allowed = getattr(settings, "source_allowlist", ()) or ()
    default_source = f"{allowed[0].rstrip('/')}/draw" if allowed else ""
    events_url = getattr(settings, "events_url", "") or ""
    html = render_template(
        "index.html",
        default_source=default_source,
        max_components=settings.max_components,
        max_restarts=settings.max_restarts,
        max_replicates=settings.max_replicates,
        methods=METHODS,
        # The page learns which statuses end a job from the API, not from a copy of its own.
        final_statuses=json.dumps(sorted(FINAL_STATUSES)),
        events_url=events_url.rstrip("/"),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _csp(events_url)
    response.headers["Vary"] = "Accept"
    # The same address answers JSON too: never let a cache mix the two up.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/")
def index():
    """The page."""
    return page()


def _prefers_html() -> bool:
    """Whether the request's Accept ranks HTML above JSON (a browser's navigation does;
    ``*/*``, no Accept, or ``application/json`` do not)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def job_page() -> Response | None:
    """``before_request``: the page for a browser opening ``/jobs/<id>``.

    Served without looking the job up: a navigation carries no bearer token, and the page
    holds no data; it asks ``GET /jobs/<id>`` for the job with the token its user gives,
    and shows that answer (a 404 included).
    """
    if request.endpoint == JOB_ENDPOINT and request.method in ("GET", "HEAD") and _prefers_html():
        return page()
    return None


def _vary_on_accept(response: Response) -> Response:
    if request.endpoint == JOB_ENDPOINT and request.method in ("GET", "HEAD"):
        response.vary.add("Accept")
    return response


def init_app(app: Flask) -> None:
    """Serve the page at ``/`` and at job addresses; its assets are the app's ``/static``."""
    app.register_blueprint(blp)
    # The page must be answered before the token check (a navigation sends no token), so
    # the hook goes just before it, after the request log has started its clock.
    hooks = app.before_request_funcs.setdefault(None, [])
    position = hooks.index(auth.authenticate) if auth.authenticate in hooks else len(hooks)
    hooks.insert(position, job_page)
    app.after_request(_vary_on_accept)
