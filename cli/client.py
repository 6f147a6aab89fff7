"""The HTTP client of the jobs API, used by the CLI, the local stack's demo and the tests.

Every failure becomes one :class:`ClientError`.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from shared.status import FINAL_STATUSES

DEFAULT_URL = "http://127.0.0.1:8000"
# The statuses a job ends in, as the API's own enum defines them.
FINAL = frozenset(status.value for status in FINAL_STATUSES)


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

    def wait(
        self, job_id: str, *, timeout: float = 60.0, interval: float = 0.1, seen: list | None = None
    ) -> dict[str, Any]:
        """Poll a job until it is final and return it; ``seen`` collects every poll's body."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if seen is not None:
                seen.append(job)
            if job["status"] in FINAL:
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} did not finish in {timeout:g} s")
            time.sleep(interval)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """POST /jobs/<id>/cancel."""
        return self.request("POST", f"/jobs/{job_id}/cancel").json()

    def delete(self, job_id: str) -> None:
        """DELETE /jobs/<id>: the job and everything kept for it."""
        self.request("DELETE", f"/jobs/{job_id}")

    def jobs(self, *, status: str | None = None, page_size: int = 50,
             page_token: str = "") -> dict[str, Any]:
        """GET /jobs: one page of the caller's jobs, newest first."""
        params: dict[str, Any] = {"page_size": page_size}
        if status:
            params["status"] = status
        if page_token:
            params["page_token"] = page_token
        return self.request("GET", "/jobs", params=params).json()

    def plot(self, job_id: str, fmt: str) -> bytes:
        """GET /jobs/<id>/plot.<fmt>."""
        return self.request("GET", f"/jobs/{job_id}/plot.{fmt}").content
