"""``GET /``: a page to submit a job, watch it run and see its result and plot.

Plain HTML, CSS and JavaScript from ``api/templates`` and ``api/static``; the page talks
to the same JSON API as any other client.
"""

from __future__ import annotations

import json

from flask import Blueprint, Flask, render_template

from api import extensions
from shared.status import FINAL_STATUSES

blp = Blueprint("web", __name__)


@blp.route("/")
def index():
    """The page."""
    settings = extensions.settings()
    allowed = getattr(settings, "source_allowlist", ()) or ()
    default_source = f"{allowed[0].rstrip('/')}/draw" if allowed else ""
    return render_template(
        "index.html",
        default_source=default_source,
        max_components=settings.max_components,
        # The page learns which statuses end a job from the API, not from a copy of its own.
        final_statuses=json.dumps(sorted(FINAL_STATUSES)),
    )


def init_app(app: Flask) -> None:
    """Serve the page; its assets are the app's ``/static`` files."""
    app.register_blueprint(blp)
