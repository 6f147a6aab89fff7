"""Load: many jobs submitted at once through the API of the local stack.

Starts the local stack, submits ``--jobs`` inline jobs (30 draws each, both
methods) concurrently, honours ``Retry-After`` on 429/503 answers and while
polling, and prints jobs/s, latency percentiles (POST to the poll that saw the
job finished) and how many succeeded, failed, were lost or duplicated.

Run: ``.venv/bin/python bench/load.py [--jobs 1000] [--clients 32] [--workers 1]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localstack.stack import Stack, StackConfig  # noqa: E402

FINAL = {"succeeded", "failed", "cancelled"}
_local = threading.local()


class Client:
    """A keep-alive HTTP/1.1 client, one per thread. The standard library's http.client
    costs less CPU per request than requests, and the load generator shares the cores
    with the system under test."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) of one request, reconnecting once if the server
        closed the connection."""
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=payload, headers=headers)
                response = self.connection.getresponse()
                data = json.loads(response.read() or b"null")
                return response.status, dict(response.getheaders()), data
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def client(api: str) -> Client:
    """This thread's client."""
    if not hasattr(_local, "client"):
        _local.client = Client(api)
    return _local.client


def job_body(rng: random.Random) -> dict:
    """30 draws of 10 flips from coins 0.3 and 0.7."""
    counts = []
    for _ in range(30):
        p = 0.3 if rng.random() < 0.5 else 0.7
        counts.append([sum(rng.random() < p for _ in range(10)), 10])
    return {"counts": counts, "seed": rng.randrange(2**32)}


def retry_after(headers: dict) -> float:
    """The server's suggested wait, in seconds."""
    return float(headers.get("Retry-After", "1"))


def submit(api: str, body: dict) -> tuple[str, float]:
    """POST until accepted, waiting as told on 429 and 503; returns (url, start time)."""
    start = time.perf_counter()
    while True:
        status, headers, answer = client(api).request("POST", "/jobs", body)
        if status == 202:
            return headers["Location"], start
        if status in (429, 503):
            time.sleep(retry_after(headers))
            continue
        raise RuntimeError(f"POST answered {status}: {answer}")


def poll(api: str, url: str) -> tuple[str | None, float]:
    """One GET: (final status or None, seconds to wait before the next)."""
    status, headers, answer = client(api).request("GET", url)
    if status != 200:
        return None, retry_after(headers)
    state = answer["status"]
    return (state if state in FINAL else None), retry_after(headers)


def run(api: str, jobs: int, clients: int, deadline: float) -> dict:
    """Submit every job at once, then poll the unfinished ones in rounds."""
    rng = random.Random(2008)
    bodies = [job_body(rng) for _ in range(jobs)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        submitted = list(pool.map(lambda b: submit(api, b), bodies))
        pending = {url: start for url, start in submitted}
        finished: dict[str, tuple[str, float]] = {}
        while pending and time.perf_counter() - started < deadline:
            urls = list(pending)
            answers = list(pool.map(lambda u: poll(api, u), urls))
            now = time.perf_counter()
            for url, (status, _) in zip(urls, answers, strict=True):
                if status is not None:
                    finished[url] = (status, now - pending.pop(url))
            if pending:
                time.sleep(min(wait for status, wait in answers if status is None))
    elapsed = time.perf_counter() - started
    latencies = sorted(latency for _, latency in finished.values())
    statuses = [status for status, _ in finished.values()]
    return {
        "jobs": jobs,
        "elapsed": elapsed,
        "succeeded": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "lost": len(pending),
        "duplicated": jobs - len({url for url, _ in submitted}),
        "latencies": latencies,
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100)."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=1, help="cpu workers")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds before giving up")
    args = parser.parse_args()

    config = StackConfig(api_port=0, drawsource_port=0, cpu_workers=args.workers)
    with Stack(config) as stack:
        result = run(stack.api_url, args.jobs, args.clients, args.deadline)

    ms = 1000.0
    lat = result["latencies"]
    print(f"{result['jobs']} inline jobs (30 draws, EM + GMM), {args.clients} clients, "
          f"{args.workers} cpu worker(s)\n")
    print(f"{'jobs/s':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
          f"{'ok':>7}{'failed':>8}{'lost':>6}{'dup':>5}")
    print(f"{result['jobs'] / result['elapsed']:>8.1f}"
          f"{percentile(lat, 50) * ms:>10.0f}{percentile(lat, 95) * ms:>10.0f}"
          f"{percentile(lat, 99) * ms:>10.0f}{result['succeeded']:>7}{result['failed']:>8}"
          f"{result['lost']:>6}{result['duplicated']:>5}")
    print(f"\nwall time {result['elapsed']:.1f} s (first POST to last job seen finished)")


if __name__ == "__main__":
    main()
