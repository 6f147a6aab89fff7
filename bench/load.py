"""Load: many jobs submitted at once through the API of the local stack, and what they cost.

Starts the local stack, warms it up, then runs rounds of ``--jobs`` inline jobs (30 draws
each, both methods) submitted concurrently by ``--clients`` threads; each round follows
completion one way, alternating between the ways asked for, so that they share the
machine's noise:

- ``poll``: GET each unfinished job in rounds, honouring ``Retry-After`` (and on 429/503);
- ``events``: one Server-Sent Events stream per job on the events process, opened after
  its POST, read by one thread with a selector until the ``done`` event.

Prints per round jobs/s, latency percentiles (POST to the poll or event that showed the
job finished) and how many succeeded, failed, were lost or duplicated; then the CPU
milliseconds per job of each process group (API, events process, workers, Redis, this load
generator; children included, from /proc), what the rest of the machine used meanwhile,
and Redis' commands per job (INFO commandstats). With ``--profile-worker DIR`` the cpu
worker's pool children run under cProfile and the hottest functions are printed.

Run: ``.venv/bin/python bench/load.py [--jobs 1000] [--clients 32] [--workers 1]
[--follow poll,events] [--rounds 1]``.
"""

from __future__ import annotations

import os

# One thread per process, as the stack gives every child: the fits measured here run as a
# cpu worker's do (libgomp's idle threads would spin on the other core, and count).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import CpuMeter, Usage  # noqa: E402
from bench.sse import StreamReader  # noqa: E402
from localstack.stack import Stack, StackConfig  # noqa: E402
from shared.config import get_settings  # noqa: E402
from shared.draws import aggregate_counts  # noqa: E402
from shared.fitting import fit_methods  # noqa: E402
from shared.schemas import JobRequestSchema  # noqa: E402

FINAL = {"succeeded", "failed", "cancelled"}
GOAL = 200.0  # jobs/s, issue 10's goal
FOLLOWS = ("poll", "events")
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


def summary(jobs: int, elapsed: float, submitted: list, finished: dict, pending: int) -> dict:
    """The figures of one round."""
    statuses = [status for status, _ in finished.values()]
    return {
        "jobs": jobs,
        "elapsed": elapsed,
        "succeeded": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "lost": pending,
        "duplicated": jobs - len({url for url, _ in submitted}),
        "latencies": sorted(latency for _, latency in finished.values()),
    }


def run_poll(api: str, bodies: list[dict], clients: int, deadline: float) -> dict:
    """Submit every job at once, then poll the unfinished ones in rounds."""
    gets = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        submitted = list(pool.map(lambda b: submit(api, b), bodies))
        pending = {url: start for url, start in submitted}
        finished: dict[str, tuple[str, float]] = {}
        while pending and time.perf_counter() - started < deadline:
            urls = list(pending)
            gets += len(urls)
            answers = list(pool.map(lambda u: poll(api, u), urls))
            now = time.perf_counter()
            for url, (status, _) in zip(urls, answers, strict=True):
                if status is not None:
                    finished[url] = (status, now - pending.pop(url))
            if pending:
                time.sleep(min(wait for status, wait in answers if status is None))
    elapsed = time.perf_counter() - started
    result = summary(len(bodies), elapsed, submitted, finished, len(pending))
    result["gets"] = gets
    return result


class Streams(StreamReader):
    """One event stream per job. Requests are HTTP/1.0, so the body is the bare stream and
    the server closes it after ``done``."""

    def __init__(self, events_url: str):
        parts = urlsplit(events_url)
        self.buffers: dict[socket.socket, tuple[str, bytearray]] = {}
        self.started: dict[str, float] = {}
        self.done_at: dict[str, float] = {}
        self.finished: dict[str, tuple[str, float]] = {}
        self.reopened: dict[str, int] = {}
        super().__init__(parts.hostname, parts.port)

    def open(self, url: str, start: float) -> None:
        """Follow the job at ``url`` (``/jobs/<id>``), submitted at ``start``."""
        with self.lock:
            self.started.setdefault(url, start)
        self.connect(f"GET {url}/events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n", url)

    def opened(self, sock: socket.socket, context: Any) -> None:
        self.buffers[sock] = (context, bytearray())

    def received(self, sock: socket.socket, data: bytes) -> None:
        url, buffer = self.buffers[sock]
        buffer += data
        if url not in self.done_at and b"event: done" in buffer:
            self.done_at[url] = time.perf_counter()

    def ended(self, sock: socket.socket) -> None:
        with self.lock:
            url, buffer = self.buffers.pop(sock)
        self._ended(url, bytes(buffer))

    def _ended(self, url: str, raw: bytes) -> None:
        """A stream closed: note the job's final status, or follow it again."""
        marker = raw.find(b"event: done\ndata: ")
        if marker < 0:
            # Cut before done (the server's Redis timed out, say): start again, a few
            # times; a job never followed to its end counts as lost.
            self.reopened[url] = self.reopened.get(url, 0) + 1
            if self.running and self.reopened[url] <= 5:
                self.open(url, self.started[url])
            return
        line = raw[marker + len(b"event: done\ndata: "):].split(b"\n", 1)[0]
        status = json.loads(line)["status"]
        with self.lock:
            self.finished[url] = (status, self.done_at[url] - self.started[url])

    def wait(self, count: int, deadline: float) -> None:
        """Until ``count`` jobs are finished or ``deadline`` (perf_counter) passes."""
        while len(self.finished) < count and time.perf_counter() < deadline:
            time.sleep(0.02)



def run_events(api: str, events: str, bodies: list[dict], clients: int, deadline: float) -> dict:
    """Submit every job at once, opening each job's event stream after its POST."""
    streams = Streams(events)

    def submit_and_follow(body: dict) -> tuple[str, float]:
        url, start = submit(api, body)
        streams.open(url, start)
        return url, start

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            submitted = list(pool.map(submit_and_follow, bodies))
        streams.wait(len(bodies), started + deadline)
        elapsed = time.perf_counter() - started
    finally:
        streams.close()
    finished = dict(streams.finished)
    return summary(len(bodies), elapsed, submitted, finished, len(bodies) - len(finished))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100)."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def wait_idle(api: str, timeout: float = 60.0) -> None:
    """Until no job is unfinished (the previous round's stragglers), then a second more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, answer = client(api).request("GET", "/jobs?page_size=1&status=queued")
        if status == 200 and not answer["jobs"]:
            break
        time.sleep(0.5)
    time.sleep(1.0)


class BenchStack(Stack):
    """The local stack, optionally with its cpu workers' pool children under cProfile, or
    with each cpu worker replaced by ``cpu_concurrency`` workers of Celery's solo pool
    (no pool parent between the broker and the task: an experiment, not the service's
    configuration)."""

    def __init__(self, config: StackConfig, *, profile_dir: Path | None, cpu_pool: str):
        super().__init__(config)
        self.profile_dir = profile_dir
        self.cpu_pool = cpu_pool

    def start_worker(self, queue: str, index: int = 1):
        if queue != "cpu" or self.cpu_pool == "prefork":
            return super().start_worker(queue, index)
        first = (index - 1) * self.config.cpu_concurrency + 1
        for number in range(first, first + self.config.cpu_concurrency):
            service = super().start_worker(queue, number)
        return service

    def _service(self, name, argv):
        if name.startswith("worker-cpu") and self.cpu_pool == "solo":
            at = argv.index("-P")
            argv = [*argv[:at], "-P", "solo", *argv[at + 4:]]
        if name.startswith("worker-cpu") and self.profile_dir is not None:
            helper = str(Path(__file__).with_name("cpu.py"))
            argv = [sys.executable, helper, "profile-celery", str(self.profile_dir), "--",
                    *argv[argv.index("celery") + 1:]]
        return super()._service(name, argv)


def print_profile(profile_dir: Path, top: int = 30) -> None:
    """The cpu worker children's hottest functions, by own time and by cumulative time."""
    files = sorted(profile_dir.glob("worker-*.prof"))
    if not files:
        print("\nno worker profile written (fewer than 50 tasks per child?)")
        return
    tasks = sum(int(p.with_suffix(".tasks").read_text()) for p in files)
    stats = pstats.Stats(*map(str, files), stream=sys.stdout)
    print(f"\ncProfile (CPU time) of the cpu worker's children: {tasks} tasks (warm-up "
          f"included), {stats.total_tt / tasks * 1000:.2f} ms per task with the profiler on")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def fits_cpu(bodies: list[dict]) -> float:
    """CPU seconds per job of the fits alone (every method, as a cpu worker runs them) on
    these job bodies, in this process."""
    schema = JobRequestSchema()
    jobs = []
    for body in bodies:
        request = schema.load(body)
        jobs.append((request.spec(0), aggregate_counts(request.counts)))
    max_gmm_draws = get_settings().max_gmm_draws
    fit_methods(jobs[0][0].methods, jobs[0][1], jobs[0][0], max_gmm_draws=max_gmm_draws)
    start = time.process_time()
    for spec, counts in jobs:
        fit_methods(spec.methods, counts, spec, max_gmm_draws=max_gmm_draws)
    return (time.process_time() - start) / len(jobs)


def print_budget(rounds: list[tuple[str, dict, Usage]], fits: tuple[int, float]) -> None:
    """What the goal's rate leaves per job, against the parts that any task body pays:
    the fits, Celery's consumer, the API's POSTs (from the events rounds, which make no
    GETs), Redis and this load generator. ``fits``: how many bodies :func:`fits_cpu`
    timed, and its CPU seconds per job."""
    ms, cores = 1000.0, os.cpu_count() or 1

    def median(value) -> float:
        return statistics.median(value(r, u) * ms / r["jobs"] for _, r, u in rounds)

    used = statistics.median(sum(u.groups.values()) / r["elapsed"] for _, r, u in rounds)
    print(f"\nbudget: {GOAL:.0f} jobs/s on {cores} cores leaves {cores * ms / GOAL:.2f} CPU ms "
          f"per job at full use; the rounds used {used:.2f} cores (median)")
    parts = [(f"fits alone (every method, this process, {fits[0]} bodies)", fits[1] * ms),
             ("Celery's consumer (the cpu worker's main process)",
              median(lambda r, u: u.leaders["cpu worker"]))]
    posts = [u.groups["api"] * ms / r["jobs"] for f, r, u in rounds if f == "events"]
    if posts:
        parts.append(("the API's POSTs (events rounds)", statistics.median(posts)))
    parts += [("Redis", median(lambda r, u: u.groups["redis"])),
              ("this load generator", median(lambda r, u: u.groups["loadgen"]))]
    for name, value in parts:
        print(f"  {name:<58}{value:>7.2f}")
    total = sum(value for _, value in parts)
    print(f"  {'sum':<58}{total:>7.2f}")
    print(f"  {'left for the rest of the task and for learning the end':<58}"
          f"{cores * ms / GOAL - total:>7.2f}")


def print_rounds(
    rounds: list[tuple[str, dict, Usage]], args: argparse.Namespace, fits: tuple[int, float]
) -> None:
    """The throughput table, the CPU table, the budget and Redis' commands per job."""
    ms = 1000.0
    pool = "" if args.cpu_pool == "prefork" else ", each as 2 solo-pool workers"
    print(f"{args.jobs} inline jobs (30 draws, EM + GMM), {args.clients} clients, "
          f"{args.workers} cpu worker(s){pool}; rounds in the order run\n")
    print(f"{'follow':<8}{'jobs/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'ok':>7}{'failed':>8}{'lost':>6}{'dup':>5}{'wall s':>8}{'GET/job':>9}")
    for follow, result, _ in rounds:
        lat = result["latencies"] or [float("nan")] * 2
        gets = f"{result['gets'] / result['jobs']:>9.2f}" if "gets" in result else f"{'-':>9}"
        print(f"{follow:<8}{result['jobs'] / result['elapsed']:>8.1f}"
              f"{percentile(lat, 50) * ms:>9.0f}{percentile(lat, 95) * ms:>9.0f}"
              f"{percentile(lat, 99) * ms:>9.0f}{result['succeeded']:>7}{result['failed']:>8}"
              f"{result['lost']:>6}{result['duplicated']:>5}{result['elapsed']:>8.1f}{gets}")

    groups = list(rounds[0][2].groups)
    print("\nCPU ms per job (utime+stime, children included); 'others' is the rest of "
          "the machine meanwhile")
    print(f"{'follow':<8}" + "".join(f"{g:>12}" for g in groups) + f"{'total':>9}{'others':>9}")
    for follow, result, usage in rounds:
        per_job = {g: usage.groups[g] * ms / result["jobs"] for g in groups}
        print(f"{follow:<8}" + "".join(f"{per_job[g]:>12.2f}" for g in groups)
              + f"{sum(per_job.values()):>9.2f}{usage.others * ms / result['jobs']:>9.2f}")

    print("of which the main process (Celery's consumer, gunicorn's arbiter), ms per job")
    for follow, result, usage in rounds:
        print(f"{follow:<8}" + "".join(
            f"{usage.leaders[g] * ms / result['jobs']:>12.2f}" if g in usage.leaders
            else f"{'':>12}" for g in groups))

    if args.rounds > 1:
        print("\nmedians per follow")
        for follow in args.follow:
            mine = [(r, u) for f, r, u in rounds if f == follow]
            rate = statistics.median(r["jobs"] / r["elapsed"] for r, _ in mine)
            cpu = statistics.median(sum(u.groups.values()) * ms / r["jobs"] for r, u in mine)
            print(f"{follow:<8}{rate:>8.1f} jobs/s  {cpu:>6.2f} CPU ms/job")

    print_budget(rounds, fits)

    print("\nRedis commands per job (INFO commandstats): calls, and Redis' usec")
    names = sorted({c for _, _, u in rounds for c in u.commands},
                   key=lambda c: -sum(u.commands.get(c, (0, 0))[1] for _, _, u in rounds))
    header = "".join(f"{f + ' calls':>14}{'usec':>8}" for f, _, _ in rounds)
    print(f"{'command':<24}{header}")
    for name in names:
        row = ""
        for _, result, usage in rounds:
            calls, usec = usage.commands.get(name, (0, 0))
            row += f"{calls / result['jobs']:>14.2f}{usec / result['jobs']:>8.1f}"
        print(f"{name:<24}{row}")
    totals = ""
    for _, result, usage in rounds:
        calls = sum(c for c, _ in usage.commands.values())
        usec = sum(u for _, u in usage.commands.values())
        totals += f"{calls / result['jobs']:>14.2f}{usec / result['jobs']:>8.1f}"
    print(f"{'all':<24}{totals}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=1, help="cpu workers")
    parser.add_argument("--follow", default="poll,events",
                        help="ways to follow jobs, alternated: poll (Retry-After), events")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each way")
    parser.add_argument("--warmup", type=int, default=40, help="jobs run first, not counted")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds before giving up")
    parser.add_argument("--cpu-pool", choices=("prefork", "solo"), default="prefork",
                        help="solo: each cpu worker becomes 2 workers of the solo pool")
    parser.add_argument("--profile-worker", type=Path, metavar="DIR",
                        help="run the cpu worker's children under cProfile, files in DIR")
    args = parser.parse_args()
    args.follow = [f.strip() for f in args.follow.split(",") if f.strip()]
    if not args.follow or set(args.follow) - set(FOLLOWS):
        parser.error(f"--follow takes a list of {', '.join(FOLLOWS)}")

    # One stream per job: the events process and Redis (which inherit it) hold one
    # descriptor per stream and more.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))

    rng = random.Random(2008)
    warmup = [job_body(rng) for _ in range(args.warmup)]
    plan = [f for _ in range(args.rounds) for f in args.follow]
    bodies = [[job_body(rng) for _ in range(args.jobs)] for _ in plan]

    config = StackConfig(api_port=0, drawsource_port=0, cpu_workers=args.workers)
    if args.profile_worker:
        args.profile_worker.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(config, profile_dir=args.profile_worker, cpu_pool=args.cpu_pool)
    rounds = []
    with stack:
        meter = CpuMeter(stack, stack.redis.url)
        if warmup:
            run_poll(stack.api_url, warmup, min(args.clients, 8), args.deadline)
        for follow, round_bodies in zip(plan, bodies, strict=True):
            wait_idle(stack.api_url)
            before = meter.snapshot()
            if follow == "poll":
                result = run_poll(stack.api_url, round_bodies, args.clients, args.deadline)
            else:
                result = run_events(stack.api_url, stack.events_url, round_bodies,
                                    args.clients, args.deadline)
            rounds.append((follow, result, Usage.between(before, meter.snapshot())))

    timed = bodies[0][:200]
    print_rounds(rounds, args, (len(timed), fits_cpu(timed)))
    if args.profile_worker:
        print_profile(args.profile_worker)


if __name__ == "__main__":
    main()
