"""The Flask front end: ``create_app`` is the only place an app is built."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from flask import Flask
from flask_smorest import Api

from api import body
from shared.config import Settings
from shared.schemas import ErrorSchema

# The API's version is the package's: one number for the service and its description.
API_VERSION = importlib.metadata.version("emcoins")


class JobsApi(Api):
    """flask-smorest's Api, documenting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each status an operation answers is listed, so a
    # client (or schemathesis) can tell a documented answer from an unexpected one.
    DEFAULT_ERROR_RESPONSE_NAME = None


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the API; ``overrides`` replaces settings fields (or sets Flask config keys)."""
    overrides = dict(overrides or {})
    settings = Settings.from_env().replace(
        **{k: overrides.pop(k) for k in list(overrides) if k in Settings.model_fields}
    )

    app = Flask(__name__)
    body.init_app(app)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="EM-Coins",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.config.update(overrides)
    # Keep the order the schemas declare (id, status, progress...), not alphabetical.
    app.json.sort_keys = False

    from api import (
        auth,
        docs,
        errors,
        events,
        extensions,
        health,
        jobs,
        metrics,
        plots,
        posteriors,
        requestlog,
        web,
    )

    extensions.init_app(app)
    requestlog.init_app(app)
    auth.init_app(app)
    docs.configure(app)
    description = "Estimate the biases of hidden coins from observed draws with EM."
    api = JobsApi(
        app,
        spec_kwargs={
            "info": {"description": description},
            "extra_plugins": [errors.UnavailablePlugin(), *auth.spec_plugins(app)],
        },
    )
    api.register_blueprint(jobs.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(plots.blp)
    api.register_blueprint(posteriors.blp)
    api.register_blueprint(metrics.blp)
    # The streams are served by their own process (create_events_app); listed here so
    # that the one API description names every interface.
    events.document(api.spec, settings.events_url)
    web.init_app(app)
    errors.init_app(app, api)
    return app


def create_events_app(overrides: dict[str, Any] | None = None) -> Flask:
    """The event streams alone (``GET /jobs/<id>/events`` and ``/healthz``), for a gevent
    server of their own; ``overrides`` as in :func:`create_app` (``EVENTS_KEEPALIVE_SECONDS``
    and ``EVENTS_CHECK_SECONDS`` shorten the streams' timers)."""
    overrides = dict(overrides or {})
    settings = Settings.from_env().replace(
        **{k: overrides.pop(k) for k in list(overrides) if k in Settings.model_fields}
    )
    # No static folder: the page and its assets are the API's.
    app = Flask(__name__, static_folder=None)
    app.config.update(SETTINGS=settings)
    app.config.update(overrides)
    app.json.sort_keys = False

    from api import auth, errors, events, extensions, requestlog

    extensions.init_app(app)
    requestlog.init_app(app)
    events.init_app(app)
    auth.init_app(app)
    errors.init_app(app, None)
    return app
