"""Helpers for tests that drive the real stack over HTTP, through the project's one client."""

from __future__ import annotations

from cli.client import Client


def submit(api_url: str, body: dict) -> dict:
    """POST a job and return the 202 answer's body."""
    return Client(api_url, timeout=10).submit(body)


def wait_for(api_url: str, job: dict, *, timeout: float = 60.0, seen: list | None = None) -> dict:
    """Poll a job until it is final; ``seen`` collects every body polled."""
    return Client(api_url, timeout=10).wait(job["id"], timeout=timeout, interval=0.02, seen=seen)
