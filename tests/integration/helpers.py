"""Polling helpers for tests that drive the real stack over HTTP."""

from __future__ import annotations

import time

import requests

FINAL = {"succeeded", "failed", "cancelled"}


def submit(api_url: str, body: dict) -> dict:
    """POST a job and return the 202 answer's body."""
    response = requests.post(f"{api_url}/jobs", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(api_url: str, job: dict, *, timeout: float = 60.0, seen: list | None = None) -> dict:
    """Poll a job until it is final; ``seen`` collects every body polled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{api_url}{job['url']}", timeout=10).json()
        if seen is not None:
            seen.append(body)
        if body["status"] in FINAL:
            return body
        time.sleep(0.02)
    raise AssertionError(f"job {job['id']} not final after {timeout} s: {body}")
