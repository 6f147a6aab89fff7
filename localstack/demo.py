"""The demo job: 30 draws from the draw source, as in the original EM-Coins, and its estimates."""

from __future__ import annotations

from typing import Any

from cli.client import Client


def run_demo_job(
    api_url: str,
    draw_url: str,
    *,
    token: str | None = None,
    draws: int = 30,
    timeout: float = 60.0,
) -> dict:
    """Submit a job over HTTP with the project's client and wait until it finishes;
    returns the final job. ``token`` is sent as a bearer token, for an API started with
    ``EMCOINS_API_TOKENS``."""
    client = Client(api_url, token=token, timeout=10)
    job = client.submit({"source": {"url": draw_url, "draws": draws}})
    return client.wait(job["id"], timeout=timeout)


def _cells(values: list[Any] | None) -> str:
    return " ".join("  n/a" if v is None else f"{v:5.3f}" for v in values or [])


def format_job(job: dict) -> str:
    """A small table of a finished job's estimates."""
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        return f"job {job['id']} {job['status']}: {error.get('code')}: {error.get('message')}"
    result = job["result"]
    rows = [("method", "thetas", "weights", "std errors")]
    if "em" in result:
        em = result["em"]
        averaged = em["averaged"]
        rows.append((f"EM, best of {averaged['restarts']} restarts", _cells(em["thetas"]),
                     _cells(em["weights"]), _cells(em["standard_errors"])))
        rows.append(("EM, restart average", _cells(averaged["thetas"]),
                     _cells(averaged["weights"]), ""))
    if "gmm" in result:
        gmm = result["gmm"]
        rows.append(("GMM baseline (means)", _cells(gmm["means"]), _cells(gmm["weights"]), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"job {job['id']} succeeded: {job['progress']['draws_total']} draws, "
        f"{result['n_components']} coins"
    ]
    lines += ["  " + "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)
