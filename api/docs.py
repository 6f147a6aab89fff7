"""Interactive API docs at ``/docs``: Swagger UI over ``/openapi.json``, its assets served here.

The assets come from the ``swagger-ui-bundle`` wheel, so the page works with no internet.
"""

from __future__ import annotations

from flask import Blueprint, Flask, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"

blp = Blueprint("docs", __name__)


@blp.route(f"{ASSETS_URL}<path:filename>")
def asset(filename: str):
    """One file of the Swagger UI bundle."""
    return send_from_directory(swagger_ui_path, filename, max_age=3600)


def configure(app: Flask) -> None:
    """Point flask-smorest's Swagger UI page at the local assets; call before ``Api(app)``."""
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", ASSETS_URL)
    # No validator badge: it would ask a public server to check the spec.
    app.config.setdefault("OPENAPI_SWAGGER_UI_CONFIG", {"validatorUrl": None})
    app.register_blueprint(blp)
