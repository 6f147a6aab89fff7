"""End-to-end latency and throughput of the job system against the in-process original design.

Starts the local stack (its own Redis, a draw source with 20 ms latency, workers,
API) and prints, side by side in one run:
- the latency of one 30-draw job through API + Celery, POST to the first GET
  showing ``succeeded`` (polling every 10 ms, jobs one after another), p50/p95;
- the original design in one process: 30 threads fetch the draws, then the same fits;
- jobs per second with 1 and 2 cpu workers.

Run: ``.venv/bin/python bench/e2e.py [--jobs 40] [--burst 60]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localstack.stack import Stack, StackConfig  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.contract import JobResult, JobSpec  # noqa: E402
from shared.draws import aggregate_counts, parse_draw_payload  # noqa: E402
from shared.fitting import fit_methods  # noqa: E402

SPEC = JobSpec(
    n_components=2, max_components=4, weights="learn", restarts=10, methods=("em", "gmm"), seed=7
)
MAX_GMM_DRAWS = Settings().max_gmm_draws
DRAWS = 30


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def in_process_job(session: requests.Session, url: str, pool: ThreadPoolExecutor) -> dict:
    """The original design: fetch the draws with threads, then fit, all in this process."""
    pairs = list(
        pool.map(
            lambda i: parse_draw_payload(session.get(url, timeout=5).json(), index=i), range(DRAWS)
        )
    )
    counts = aggregate_counts(pairs)
    parts = fit_methods(SPEC.methods, counts, SPEC, max_gmm_draws=MAX_GMM_DRAWS)
    return JobResult.merge(parts).to_json()


def service_job(session: requests.Session, api: str, url: str) -> float:
    """Seconds from POST to the first GET that shows ``succeeded``, polling every 10 ms."""
    body = {"source": {"url": url, "draws": DRAWS}, "seed": SPEC.seed}
    start = time.perf_counter()
    location = session.post(f"{api}/jobs", json=body, timeout=10).headers["Location"]
    while True:
        status = session.get(f"{api}{location}", timeout=10).json()["status"]
        if status == "succeeded":
            return time.perf_counter() - start
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"job {location} {status}")
        time.sleep(0.01)


def burst(api: str, url: str, jobs: int) -> float:
    """Jobs per second when ``jobs`` are submitted at once and polled to the end."""

    def one(_: int) -> float:
        with requests.Session() as session:
            return service_job(session, api, url)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(jobs, 32)) as pool:
        list(pool.map(one, range(jobs)))
    return jobs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="sequential jobs per design")
    parser.add_argument("--burst", type=int, default=60, help="jobs per throughput burst")
    args = parser.parse_args()

    config = StackConfig(
        api_port=0, drawsource_port=0, api_workers=2, env={"DRAWSOURCE_LATENCY_MS": "20"}
    )
    with Stack(config) as stack:
        url = f"{stack.drawsource_url}/draw"
        session = requests.Session()
        with ThreadPoolExecutor(max_workers=DRAWS) as pool:
            for _ in range(3):  # warm both paths: imports, connections, worker pools
                in_process_job(session, url, pool)
                service_job(session, stack.api_url, url)
            baseline, service = [], []
            for _ in range(args.jobs):  # interleaved, so both see the same machine noise
                start = time.perf_counter()
                in_process_job(session, url, pool)
                baseline.append(time.perf_counter() - start)
                service.append(service_job(session, stack.api_url, url))
        one_worker = burst(stack.api_url, url, args.burst)
        stack.start_worker("cpu", 2)
        time.sleep(3)  # let the second worker join before measuring
        two_workers = burst(stack.api_url, url, args.burst)

    ms = 1000.0
    print(f"30-draw jobs, draw source latency 20 ms, {args.jobs} jobs each, interleaved\n")
    print(f"{'design':<36}{'p50 ms':>10}{'p95 ms':>10}")
    print(
        f"{'in-process (threads + fits)':<36}{statistics.median(baseline) * ms:>10.1f}"
        f"{percentile(baseline, 95) * ms:>10.1f}"
    )
    print(
        f"{'API + Celery (POST to succeeded)':<36}{statistics.median(service) * ms:>10.1f}"
        f"{percentile(service, 95) * ms:>10.1f}"
    )
    ratio = statistics.median(service) / statistics.median(baseline)
    print(f"\np50 ratio service / in-process: {ratio:.2f}  (goal <= 1.5)")
    print(f"\n{'cpu workers':<14}{'jobs/s':>10}   ({args.burst} jobs submitted at once)")
    print(f"{1:<14}{one_worker:>10.1f}")
    print(f"{2:<14}{two_workers:>10.1f}")


if __name__ == "__main__":
    main()
