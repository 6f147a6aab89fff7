"""Latency of small jobs while a bootstrap of B=2000 runs, against the same jobs on an idle stack.

Starts the local stack as ``make run`` does (one cpu worker of two processes, which take the
``replicates`` queue only when no fit waits), then times small jobs one after another, from
POST to the first GET showing ``succeeded`` (polling every 10 ms): first with nothing else
running, then while one bootstrap job of B replicates keeps both worker processes busy with
its chunks. Only the small jobs that finished before the bootstrap are counted in the second
row. With ``--chunk-seconds 1,0.25`` each chunk target gets its own stack and rows.

Run: ``.venv/bin/python bench/starvation.py [--jobs 40] [--replicates 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localstack.stack import Stack, StackConfig  # noqa: E402
from shared.draws import aggregate_counts  # noqa: E402

# A small job: 30 draws of 10 flips, inline, both methods, the default 10 restarts.
SMALL = {"counts": [[3, 10, 8], [4, 10, 7], [7, 10, 8], [8, 10, 7]], "seed": 1}


def heavy_counts(draws: int, seed: int = 5) -> list[list[int]]:
    """Draws of 20 to 400 flips from coins 0.2, 0.5, 0.8: thousands of distinct rows, so that
    each bootstrap replicate is a refit of some milliseconds."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(20, 400, draws)
    heads = rng.binomial(flips, rng.choice([0.2, 0.5, 0.8], draws))
    return aggregate_counts((int(h), int(n)) for h, n in zip(heads, flips, strict=True))


def latency(session: requests.Session, api: str) -> float:
    """Seconds from POST to the first GET that shows ``succeeded``."""
    start = time.perf_counter()
    location = session.post(f"{api}/jobs", json=SMALL, timeout=30).headers["Location"]
    while True:
        status = session.get(f"{api}{location}", timeout=30).json()["status"]
        if status == "succeeded":
            return time.perf_counter() - start
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"job {location} {status}")
        time.sleep(0.01)


def status(session: requests.Session, api: str, url: str) -> dict:
    return session.get(f"{api}{url}", timeout=30).json()


def measure(chunk_seconds: float, args: argparse.Namespace) -> dict[str, list[float] | float]:
    """Small-job latencies on an idle stack and during the bootstrap, on a fresh stack."""
    config = StackConfig(
        api_port=0, drawsource_port=0, api_workers=1, start_drawsource=False,
        start_events=False, env={"EMCOINS_REPLICATE_CHUNK_SECONDS": str(chunk_seconds)},
    )
    heavy = {"counts": heavy_counts(args.draws), "n_components": 3, "methods": ["em"],
             "seed": 3, "bootstrap": {"replicates": args.replicates}}
    with Stack(config) as stack:
        session = requests.Session()
        api = stack.api_url
        for _ in range(5):  # warm both worker processes
            latency(session, api)
        idle = [latency(session, api) for _ in range(args.jobs)]
        job = session.post(f"{api}/jobs", json=heavy, timeout=30).json()
        while "replicates" not in status(session, api, job["url"])["progress"]:
            time.sleep(0.05)
        busy: list[float] = []
        began = time.perf_counter()
        while len(busy) < args.jobs * 10:
            took = latency(session, api)
            if status(session, api, job["url"])["status"] != "fitting":
                break  # the bootstrap ended during this one: not counted
            busy.append(took)
        while status(session, api, job["url"])["status"] == "fitting":
            time.sleep(0.2)
        done = status(session, api, job["url"])
        if done["status"] != "succeeded":
            raise RuntimeError(f"the bootstrap job {done['status']}: {done['error']}")
        boot = time.perf_counter() - began
    return {"idle": idle, "busy": busy, "bootstrap": boot}


def row(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return (f"{label:<44}{len(ms):>6}{statistics.median(ms):>10.1f}{p95:>10.1f}"
            f"{ms[-1]:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="small jobs on the idle stack")
    parser.add_argument("--replicates", type=int, default=2000, help="B of the bootstrap job")
    parser.add_argument("--draws", type=int, default=5000, help="draws of the bootstrap job")
    parser.add_argument("--chunk-seconds", default="0.25",
                        help="EMCOINS_REPLICATE_CHUNK_SECONDS values, comma-separated")
    args = parser.parse_args()
    targets = [float(v) for v in args.chunk_seconds.split(",")]

    results = {target: measure(target, args) for target in targets}
    print("small jobs (30 inline draws, EM and GMM) one after another, POST to succeeded; "
          "one cpu worker of 2 processes\n")
    print(f"{'condition':<44}{'jobs':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for target, result in results.items():
        print(row(f"idle (chunks of {target:g} s)", result["idle"]))
        print(row(f"bootstrap B={args.replicates} running", result["busy"]))
        print(f"{'':<4}(the bootstrap took {result['bootstrap']:.1f} s alongside)")


if __name__ == "__main__":
    main()
