"""Optional bearer-token authentication and job ownership, checked in one place.

With ``EMCOINS_API_TOKENS`` empty nothing is checked. Otherwise every request but the
public paths needs ``Authorization: Bearer <token>`` with a configured token, and a job
belongs to the token that created it: for any other token it does not exist (404, not
403, so that job ids cannot be probed).
"""

from __future__ import annotations

import hashlib
import hmac

from apispec import BasePlugin
from flask import Flask, current_app, g, request

from api import extensions
from api.errors import APIError
from shared.store import JobNotFound, JobRecord

# The probes, the monitoring scrape, the API description and the page with its assets;
# the page holds no data itself: it asks the API with the token its user gives.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/docs/",)
SCHEME_NAME = "bearerAuth"


def owner_of(token: str) -> str:
    """What a job keeps of the token that created it: its SHA-256, never the token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def current_owner() -> str | None:
    """The owner recorded on jobs created by this request; None when auth is off."""
    return g.get("emcoins_owner")


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a token."""
    static = f"{current_app.static_url_path}/"
    return path in PUBLIC_PATHS or path.startswith((*PUBLIC_PREFIXES, static))


def _presented_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _matching(presented: str, tokens: tuple[str, ...]) -> str | None:
    """The configured token equal to ``presented``, compared in constant time against all.

    Digests are compared, so that the time does not depend on the tokens' lengths either.
    """
    given = hashlib.sha256(presented.encode()).digest()
    match = None
    for token in tokens:
        if hmac.compare_digest(given, hashlib.sha256(token.encode()).digest()):
            match = token
    return match


def authenticate() -> None:
    """``before_request``: refuse a protected request without a valid token (401)."""
    g.emcoins_owner = None
    tokens = extensions.settings().api_tokens
    if not tokens or is_public(request.path):
        return
    presented = _presented_token()
    token = _matching(presented, tokens) if presented is not None else None
    if token is None:
        challenge = 'Bearer realm="emcoins"'
        if presented is not None:
            challenge += ', error="invalid_token"'
        raise APIError(
            401,
            "Send a valid token: Authorization: Bearer <token> (EMCOINS_API_TOKENS).",
            headers={"WWW-Authenticate": challenge},
        )
    g.emcoins_owner = owner_of(token)


def job_or_404(job_id: str) -> JobRecord:
    """The job, if it exists and the caller may see it; the same 404 for either reason."""
    try:
        record: JobRecord | None = extensions.store().get(job_id)
    except (JobNotFound, ValueError):
        record = None
    if record is not None and extensions.settings().api_tokens:
        owner = current_owner() or ""
        if record.owner is None or not hmac.compare_digest(record.owner, owner):
            record = None
    if record is None:
        raise APIError(404, f"No job {job_id}.")
    return record


class BearerAuthPlugin(BasePlugin):
    """Documents the bearer scheme and the 401 on every protected operation."""

    def init_spec(self, spec) -> None:
        """Declare the security scheme."""
        super().init_spec(spec)
        spec.components.security_scheme(SCHEME_NAME, {"type": "http", "scheme": "bearer"})

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        """Add the security requirement and the 401 answer to protected operations."""
        if path in PUBLIC_PATHS:
            return
        for operation in (operations or {}).values():
            operation["security"] = [{SCHEME_NAME: []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "No valid bearer token (EMCOINS_API_TOKENS is set).",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                },
            }


def spec_plugins(app: Flask) -> list[BasePlugin]:
    """The apispec plugins documenting authentication, when it is on."""
    return [BearerAuthPlugin()] if app.config["SETTINGS"].api_tokens else []


def init_app(app: Flask) -> None:
    """Check tokens before every request."""
    app.before_request(authenticate)
