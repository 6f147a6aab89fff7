"""The Flask application: thin routes over :class:`CoinPlayer` and :class:`FaultPlan`."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from drawsource.coins import CoinPlayer, FaultPlan, to_flip_string
from drawsource.config import DrawSourceConfig

FAULT_STATUS = 503


def create_app(config: DrawSourceConfig | None = None) -> Flask:
    """Build the draw source app; without a config, read it from the environment."""
    config = DrawSourceConfig.from_env() if config is None else config
    player = CoinPlayer.from_config(config)
    faults = FaultPlan.from_config(config)

    app = Flask(__name__)
    app.extensions["drawsource"] = {"config": config, "player": player, "faults": faults}

    @app.before_request
    def _inject_latency() -> None:
        # Here rather than in /draw so that every answer, 404s included, is delayed.
        if config.latency_ms > 0:
            time.sleep(config.latency_ms / 1000.0)

    @app.get("/draw")
    def draw() -> Any:
        fail, stall = faults.roll()
        if stall:
            time.sleep(config.slow_seconds)
        if fail:
            return _error(FAULT_STATUS, "Service Unavailable", "injected failure")
        return _format_draw(player.draw(), config.format)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/")
    @app.get("/config")
    def show_config() -> Any:
        return config.public()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # get_response keeps headers such as Allow on a 405; only the body becomes JSON.
        response = exc.get_response()
        code = exc.code or 500
        response.set_data(json.dumps(_error_body(code, exc.name, exc.description or "")))
        response.content_type = "application/json"
        return response

    return app


def _format_draw(flips: list[int], fmt: str) -> dict[str, Any]:
    if fmt == "string":
        return {"flips": to_flip_string(flips)}
    if fmt == "list":
        return {"flips": flips}
    # The original's draw API answered with the API Gateway proxy shape as the body.
    return {"statusCode": 200, "body": json.dumps(flips)}


def _error_body(code: int, name: str, message: str) -> dict[str, Any]:
    return {"error": name, "status": code, "message": message}


def _error(code: int, name: str, message: str) -> tuple[Response, int]:
    return jsonify(_error_body(code, name, message)), code
