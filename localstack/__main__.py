"""``python -m localstack run|demo|clean-data``: start the stack, run the demo job, serve or exit.

``clean-data`` empties the data folder (``EMCOINS_DATA_DIR``), refusing while a stack uses it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from localstack.datadir import DataDirBusy, empty_data_dir
from localstack.demo import format_job, run_demo_job
from localstack.stack import PortBusy, Stack, StackConfig


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m localstack", description=__doc__)
    parser.add_argument(
        "mode",
        choices=["run", "demo", "clean-data"],
        help="run: serve until Ctrl-C; demo: exit; clean-data: empty the data folder",
    )
    args = parser.parse_args(argv)
    try:
        config = StackConfig.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.mode == "clean-data":
        return clean_data(config)

    stop = threading.Event()
    # SIGTERM (from a supervisor) stops the stack as Ctrl-C does; SIGINT is set
    # explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    stack = Stack(config)
    try:
        print("Starting Redis, the draw source, the workers, the API and the event streams...",
              flush=True)
        stack.start()
        print(f"API: {stack.api_url}")
        print(f"Draw source: {stack.drawsource_url}")
        if config.start_events:
            print(f"Event streams: {stack.events_url}  (EMCOINS_EVENTS_URL for the emcoins CLI)")
        print(f"Logs: {stack.log_dir}", flush=True)
        if config.data_dir is not None:
            print(f"Data (jobs are kept across restarts): {config.data_dir}", flush=True)
        print(f"Web page: {stack.api_url}/  API docs: {stack.api_url}/docs  "
              f"Metrics: {stack.api_url}/metrics")
        if stack.redis is not None:
            # The app configures its broker from EMCOINS_REDIS_URL; flower's own --broker
            # reaches only part of Flower (its inspector would still dial the default).
            print("Flower (task monitor), in another shell: "
                  f"EMCOINS_REDIS_URL={stack.redis.url} "
                  f".venv/bin/celery -A workers.celery_app flower --broker={stack.redis.url}",
                  flush=True)
        job = run_demo_job(stack.api_url, f"{stack.drawsource_url}/draw", token=stack.api_token)
        print(format_job(job), flush=True)
        if job["status"] != "succeeded":
            return 1
        if args.mode == "run":
            print("Serving; press Ctrl-C to stop.", flush=True)
            while not stop.wait(0.5):
                pass
        return 0
    except (PortBusy, DataDirBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("Stopping...", file=sys.stderr, flush=True)
        stack.stop()


def clean_data(config: StackConfig) -> int:
    """Empty the data folder unless a stack holds it; returns the exit status."""
    if config.data_dir is None:
        print("EMCOINS_DATA_DIR is empty: there is no data folder to clean")
        return 0
    try:
        removed = empty_data_dir(config.data_dir)
    except DataDirBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Emptied {config.data_dir}" if removed else f"{config.data_dir}: nothing to remove")
    return 0


if __name__ == "__main__":
    sys.exit(main())
