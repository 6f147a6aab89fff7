"""Open event streams against the API's probe: does GET /healthz stay fast?

Starts the local stack without workers (so that jobs stay queued and their streams stay
open), submits one inline job per stream, opens ``GET /jobs/<id>/events`` on the events
process for each, waits until every stream has sent its first event, and then times
``GET /healthz`` on the API (a new connection per request, as a probe makes it) for at
least one keep-alive interval. Prints, per number of open streams, the probe's latency
percentiles, the keep-alive comments the streams delivered meanwhile, how many streams were
still open at the end, and the events process's resident memory.

Run: ``.venv/bin/python bench/streams.py [--streams 0,100,500] [--probes 300]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sse import StreamReader  # noqa: E402
from localstack.stack import Stack, StackConfig  # noqa: E402

JOB = {"counts": [[3, 10], [8, 10], [2, 10], [9, 10]], "seed": 1, "restarts": 1}


class Streams(StreamReader):
    """Many open SSE connections: when each sent its first event, and the keep-alives."""

    def __init__(self, host: str, port: int):
        self.first_event: dict[socket.socket, float] = {}
        self.opened_at: dict[socket.socket, float] = {}
        self.keepalives = 0
        super().__init__(host, port)

    def open(self, job_id: str) -> None:
        """Connect and send the request; the reader thread takes the answer."""
        self.connect(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {self.host}\r\n"
                     "Accept: text/event-stream\r\n\r\n")

    def opened(self, sock: socket.socket, context: Any) -> None:
        self.opened_at[sock] = time.monotonic()

    def received(self, sock: socket.socket, data: bytes) -> None:
        if sock not in self.first_event and b"event: status" in data:
            self.first_event[sock] = time.monotonic()
        self.keepalives += data.count(b": keep-alive")

    def wait_first_events(self, count: int, timeout: float) -> None:
        """Until ``count`` streams have sent their first event."""
        deadline = time.monotonic() + timeout
        while len(self.first_event) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.first_event)} of {count} streams answered")
            time.sleep(0.05)

    def time_to_first_event(self) -> list[float]:
        """Seconds from each request to its first event."""
        with self.lock:
            return [self.first_event[s] - self.opened_at[s] for s in self.first_event]


def submit_jobs(host: str, port: int, count: int) -> list[str]:
    """``count`` inline jobs, which stay queued without workers."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    ids = []
    for _ in range(count):
        connection.request("POST", "/jobs", body=json.dumps(JOB),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
        if response.status != 202:
            raise RuntimeError(f"POST /jobs answered {response.status}: {body}")
        ids.append(body["id"])
    connection.close()
    return ids


def probe(host: str, port: int, count: int, spacing: float) -> list[float]:
    """Milliseconds of ``count`` GET /healthz, each on a new connection."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        connection.close()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise RuntimeError(f"/healthz answered {response.status}")
        time.sleep(spacing)
    return latencies


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn's master and worker), MB."""
    pids, total = [pid], 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    pids += [int(c) for c in children]
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1-99) by linear interpolation."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="0,100,500",
                        help="Comma-separated numbers of open streams to measure at.")
    parser.add_argument("--probes", type=int, default=300, help="GET /healthz per step.")
    parser.add_argument("--seconds", type=float, default=18.0,
                        help="Spread each step's probes over this long (>= 15: a keep-alive).")
    args = parser.parse_args()
    steps = sorted({int(n) for n in args.streams.split(",")})
    config = StackConfig(api_port=0, drawsource_port=0, start_workers=False,
                         start_drawsource=False, data_dir=None, restart_crashed=False)
    rows = []
    with Stack(config) as stack:
        host = stack.config.host
        jobs = submit_jobs(host, stack.api_port, max(steps))
        streams = Streams(host, stack.events_port)
        try:
            for step in steps:
                while len(streams.opened_at) < step:
                    streams.open(jobs[len(streams.opened_at)])
                streams.wait_first_events(step, timeout=60)
                before = streams.keepalives
                latencies = probe(host, stack.api_port, args.probes,
                                  spacing=args.seconds / args.probes)
                rows.append({
                    "streams": step,
                    "open_after": streams.open_count(),
                    "p50": percentile(latencies, 50),
                    "p95": percentile(latencies, 95),
                    "p99": percentile(latencies, 99),
                    "max": max(latencies),
                    "keepalives": streams.keepalives - before,
                    "first_event_p95": (percentile(streams.time_to_first_event(), 95) * 1000
                                        if step > 1 else float("nan")),
                    "rss": rss_mb(stack.services["events"].pid),
                })
        finally:
            streams.close()
    print(f"GET /healthz on the API (gunicorn, {config.api_workers} processes x "
          f"{config.api_threads} threads) while streams are open on the events process "
          f"(gevent, 1 process); {args.probes} probes over {args.seconds:g} s per row")
    print(f"{'streams':>8}{'still open':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'keep-alives':>13}{'1st event p95 ms':>18}{'events RSS MB':>15}")
    for r in rows:
        print(f"{r['streams']:>8}{r['open_after']:>12}{r['p50']:>9.2f}{r['p95']:>9.2f}"
              f"{r['p99']:>9.2f}{r['max']:>9.2f}{r['keepalives']:>13}"
              f"{r['first_event_p95']:>18.1f}{r['rss']:>15.1f}")


if __name__ == "__main__":
    main()
