"""A small HTTP client of the jobs API; every failure becomes one :class:`ClientError`."""

from __future__ import annotations

from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """Something the user should read as one line: an API error or an unreachable API."""


def _api_message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().splitlines()
        return f"HTTP {response.status_code} {response.reason}: {text[0] if text else ''}".rstrip()
    details = error.get("details") or {}
    extra = "; ".join(f"{key}: {value}" for key, value in details.items())
    message = f"{error.get('message', '')} ({extra})" if extra else error.get("message", "")
    return f"{message} [HTTP {response.status_code} {error.get('code', '')}]"


class Client:
    """Talks to one API base URL, with a bearer token when one is given."""

    def __init__(self, base_url: str = DEFAULT_URL, *, token: str | None = None,
                 timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request; raise :class:`ClientError` unless the answer is 2xx."""
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise ClientError(
                f"cannot connect to the API at {self.base_url} (is it running? "
                "set EMCOINS_API_URL or --api-url)"
            ) from None
        except requests.Timeout:
            raise ClientError(f"the API at {self.base_url} did not answer in time") from None
        except requests.RequestException as exc:
            raise ClientError(f"request to {url} failed: {exc}") from None
        if not response.ok:
            raise ClientError(_api_message(response))
        return response

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs; returns ``{id, status, url}``."""
        return self.request("POST", "/jobs", json=body).json()

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/<id>."""
        return self.request("GET", f"/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """DELETE /jobs/<id>."""
        return self.request("DELETE", f"/jobs/{job_id}").json()

    def plot(self, job_id: str, fmt: str) -> bytes:
        """GET /jobs/<id>/plot.<fmt>."""
        return self.request("GET", f"/jobs/{job_id}/plot.{fmt}").content
