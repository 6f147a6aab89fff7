"""One bootstrap job spread over 1, then 2 cpu worker processes, against one plain process.

Starts the local stack (its own Redis, API, no draw source) once per worker count, each
worker with concurrency 1, and submits the same bootstrap job (inline counts, EM only,
fixed seed). The service's time is the job's time from its ``fitting`` event to its
``succeeded`` event (Redis stream ids are the server's clock in ms), so queueing before the
fit is left out; the plain process times the same EM fit and the same B replicates
(``shared.estimation.bootstrap.bootstrap``) in this process. Prints the table, the
speedup, the service's cost per replicate against the plain process's, and the overhead
per chunk: as a whole (the service's extra time spread over its chunks) and the part the
chunk tasks log themselves (reading the job before the work, the write-once save after).

Run: ``.venv/bin/python bench/scale.py [--replicates 2000] [--draws 5000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# One thread per process, as the stack gives its workers: the plain process must not get
# more cores than one worker process has.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import numpy as np  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localstack.stack import Stack, StackConfig  # noqa: E402
from shared import keys  # noqa: E402
from shared.chunks import ChunkLayout  # noqa: E402
from shared.contract import JobSpec  # noqa: E402
from shared.draws import aggregate_counts  # noqa: E402
from shared.estimation.bootstrap import bootstrap  # noqa: E402
from shared.fitting import fit_methods  # noqa: E402


def design(draws: int, components: int, seed: int) -> list[list[int]]:
    """``draws`` draws of 20 to 400 flips from ``components`` coins spread over (0.2, 0.8):
    thousands of distinct (heads, flips) rows, so that a replicate is a real refit."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(20, 400, draws)
    coins = np.linspace(0.2, 0.8, components)
    heads = rng.binomial(flips, rng.choice(coins, draws))
    return aggregate_counts((int(h), int(n)) for h, n in zip(heads, flips, strict=True))


def request(counts: list[list[int]], args: argparse.Namespace) -> dict:
    """The job's body."""
    return {
        "counts": counts, "n_components": args.components, "methods": ["em"],
        "restarts": args.restarts, "seed": args.seed,
        "bootstrap": {"replicates": args.replicates, "kind": args.kind},
    }


def plain(counts: list[list[int]], args: argparse.Namespace) -> tuple[float, float, dict]:
    """Seconds for the EM fit, then for the B replicates, in this process; the intervals."""
    spec = JobSpec(n_components=args.components, max_components=args.components,
                   weights="learn", restarts=args.restarts, methods=("em",), seed=args.seed)
    table = np.asarray(counts)
    start = time.perf_counter()
    [part] = fit_methods(["em"], counts, spec, max_gmm_draws=10**6)
    fitted = time.perf_counter()
    estimate = part.estimate
    intervals = bootstrap(
        args.kind, table[:, 0], table[:, 1], table[:, 2], list(estimate.thetas),
        list(estimate.weights), replicates=args.replicates, level=0.95, seed=args.seed,
    )
    return fitted - start, time.perf_counter() - fitted, intervals


def stream_ms(entry_id: str) -> int:
    """The Redis time (ms) of a stream entry."""
    return int(entry_id.split("-")[0])


def service(workers: int, counts: list[list[int]], args: argparse.Namespace) -> dict:
    """Run the job on a fresh stack with ``workers`` cpu workers of concurrency 1."""
    logs = Path(tempfile.mkdtemp(prefix="emcoins-scale-"))
    config = StackConfig(
        api_port=0, drawsource_port=0, api_workers=1, cpu_workers=workers, cpu_concurrency=1,
        start_drawsource=False, start_events=False, log_dir=logs,
        env={"EMCOINS_REPLICATE_CHUNK_SECONDS": str(args.chunk_seconds)},
    )
    with Stack(config) as stack:
        api = requests.Session()
        # Warm the worker processes (imports, first fits) outside the measured job.
        warm = api.post(f"{stack.api_url}/jobs", json={
            **request(counts[:50], args), "n_components": 2,
            "bootstrap": {"replicates": 20 * workers},
        }, timeout=30).json()
        wait(api, stack.api_url, warm["url"])
        job = api.post(f"{stack.api_url}/jobs", json=request(counts, args), timeout=30).json()
        client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        # Watch the status field in Redis (a microsecond each), not the API: a GET of the
        # job reads its thousands of rows, CPU taken from the workers being measured.
        while client.hget(keys.job(job["id"]), "status") not in ("succeeded", "failed",
                                                                  "cancelled"):
            time.sleep(0.1)
        done = wait(api, stack.api_url, job["url"])
        events = client.xrange(keys.job_events(job["id"]))
        setup = json.loads(client.hget(keys.job_analyses(job["id"]), "setup:bootstrap:0"))
    at = {fields["status"]: stream_ms(entry) for entry, fields in events
          if fields.get("type") == "status"}
    # Every chunk's own report, and the first chunk's (run while timing) from the start.
    lines = [
        line for path in logs.glob("worker-cpu-*.log") for line in _json_lines(path)
        if line.get("job_id") == job["id"] and "work_ms" in line
    ]
    chunk_lines = [line for line in lines if "save_ms" in line]
    return {
        "seconds": (at["succeeded"] - at["fitting"]) / 1000,
        "intervals": done["result"]["em"]["bootstrap"],
        "chunks": ChunkLayout.from_json(setup["layout"]).chunks,
        "size": setup["layout"]["size"],
        "work_seconds": sum(line["work_ms"] for line in lines) / 1000,
        "in_task_ms": statistics.median(
            line["read_ms"] + line["save_ms"] for line in chunk_lines
        ) if chunk_lines else float("nan"),
    }


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
    return lines


def wait(api: requests.Session, base: str, url: str, timeout: float = 3600) -> dict:
    """Poll a job until it is final; fail unless it succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"{base}{url}", timeout=30).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            if body["status"] != "succeeded":
                raise RuntimeError(f"job {url} {body['status']}: {body['error']}")
            return body
        # Seldom: each poll reads the job's thousands of rows, CPU taken from the workers.
        time.sleep(0.5)
    raise TimeoutError(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000, help="B (default 2000)")
    parser.add_argument("--draws", type=int, default=5000, help="draws in the data set")
    parser.add_argument("--components", type=int, default=3, help="K, fixed")
    parser.add_argument("--restarts", type=int, default=10, help="restarts of the EM fit")
    parser.add_argument("--kind", default="nonparametric",
                        choices=["nonparametric", "parametric"])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--chunk-seconds", type=float, default=0.25,
                        help="EMCOINS_REPLICATE_CHUNK_SECONDS for the workers")
    args = parser.parse_args()

    counts = design(args.draws, args.components, args.seed)
    plain(counts[:50], argparse.Namespace(**{**vars(args), "replicates": 5}))  # warm imports
    load_before = os.getloadavg()[0]
    fit, replicating, reference = plain(counts, args)
    alone = fit + replicating
    runs = {workers: service(workers, counts, args) for workers in (1, 2)}

    per_plain = replicating / args.replicates * 1000
    print(f"bootstrap of B={args.replicates} ({args.kind}), {args.draws} draws in "
          f"{len(counts)} distinct rows, K={args.components}; each time includes the EM fit "
          f"({fit:.2f} s)\n")
    print(f"{'run':<26}{'seconds':>9}{'ms/replicate':>14}{'vs plain':>10}{'chunks':>8}"
          f"{'size':>6}")
    print(f"{'one plain process':<26}{alone:>9.2f}{per_plain:>14.2f}{'':>10}{'':>8}{'':>6}")
    for workers, run in runs.items():
        # Worker-seconds per replicate: the cost, whatever the number of workers.
        per = (run["seconds"] * workers - fit) / args.replicates * 1000
        label = f"service, {workers} cpu worker{'s' if workers > 1 else ''}"
        print(f"{label:<26}{run['seconds']:>9.2f}{per:>14.2f}{per / per_plain - 1:>+10.1%}"
              f"{run['chunks']:>8}{run['size']:>6}")
    one = runs[1]
    print(f"\nspeedup 2/1: {one['seconds'] / runs[2]['seconds']:.2f}")
    print(f"service overhead (1 worker): {one['seconds'] / alone - 1:+.1%} of the plain "
          "process's time")
    # What the service adds besides the replicates' own compute, as the chunk tasks timed it.
    beside = one["seconds"] - fit - one["work_seconds"]
    print(f"overhead per chunk: {beside / one['chunks'] * 1000:.1f} ms (1 worker: the job's "
          f"time less the EM fit and the replicates' compute, over {one['chunks']} chunks), "
          f"of which {one['in_task_ms']:.1f} ms (median) reading the job and saving, inside "
          "the chunk task")
    print(f"replicates' compute in the service: {one['work_seconds']:.2f} s (plain "
          f"{replicating:.2f} s; the difference is this machine's speed at the time)")
    same = all(run["intervals"] == reference for run in runs.values())
    print(f"intervals equal to the plain process's: {'yes' if same else 'NO'}")
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
