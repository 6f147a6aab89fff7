"""Losing the Redis master under load: the sentinels promote the replica, nothing is lost.

A master, a replica and three sentinels (down-after-milliseconds 1000), the API under
gunicorn and a cpu worker, all with EMCOINS_REDIS_SENTINELS set. Four clients submit 200
inline jobs, each with an Idempotency-Key of its own, and retry a 503 after its
Retry-After with the same key (as a client must, since a 503 can come after the job was
stored). After 50 jobs are accepted the master is killed with SIGKILL.

Checked: no answer is a 500 and every 503 carries Retry-After; every 202's job id is
distinct and reaches succeeded; the store's count of finished jobs equals the accepted
jobs (none lost, none run to the end twice). Reported: the gap from the kill until the API
answers 202 again, until the last job finished, and how many jobs the workers' sweep
carried on (a task the old master popped but never delivered is lost with it).
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localstack.ports import free_port
from localstack.processes import Service, wait_http
from shared import keys, metrics
from shared.config import Settings
from shared.store import connect
from tests.sentinel.cluster import SentinelCluster

pytestmark = [pytest.mark.sentinel, pytest.mark.slow]

JOBS = 200
KILL_AFTER = 50
CLIENTS = 4
JOB = {"counts": [[3, 10], [7, 10], [2, 10], [8, 10]], "n_components": 2}
# Long enough for the failover, a redelivery after the visibility timeout, and 200 fits.
FINISH_WITHIN = 180.0
# Services the supervisor restarted after they exited on their own.
RESTARTS: list[str] = []


@pytest.fixture
def service_env(cluster: SentinelCluster) -> dict[str, str]:
    """The environment of the API and the worker: Redis found through the sentinels."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EMCOINS_")},
        "EMCOINS_REDIS_SENTINELS": cluster.addresses,
        "EMCOINS_REDIS_MASTER": cluster.master_name,
        # Only the database number is read from the URL when sentinels are set.
        "EMCOINS_REDIS_URL": "redis://127.0.0.1:1/0",
        "EMCOINS_LOG_FORMAT": "text",
        "EMCOINS_VISIBILITY_TIMEOUT": "15",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


@pytest.fixture
def api(tmp_path: Path, service_env: dict[str, str]) -> Iterator[str]:
    """The API (gunicorn, two workers) and one cpu worker; the API's base URL."""
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    services = [
        Service("worker-cpu", [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "cpu",
            "-P", "prefork", "-c", "2", "-n", "cpu1@%h", "--without-gossip",
            "--without-mingle", "--loglevel=INFO",
        ], env=service_env, log_dir=logs),
        Service("api", [
            sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "2",
            "-k", "api.errors.JSONErrorWorker", "--threads", "8", "--graceful-timeout", "5",
            "api:create_app()",
        ], env=service_env, log_dir=logs),
    ]
    watching = threading.Event()
    watching.set()

    def supervise() -> None:
        # As compose's `restart: unless-stopped` does: kombu's worker can exit when its
        # broker connection breaks (an AttributeError while closing the old connection).
        while watching.is_set():
            time.sleep(0.2)
            for service in services:
                if watching.is_set() and not service.running():
                    RESTARTS.append(service.name)
                    service.start()

    watcher = threading.Thread(target=supervise, daemon=True)
    try:
        for service in services:
            service.start()
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, service=services[1])
        watcher.start()
        yield f"http://127.0.0.1:{port}"
    finally:
        watching.clear()
        if watcher.is_alive():
            watcher.join()
        for service in services:
            service.stop()


class Load:
    """Clients submitting jobs, each retried after a 503 with its own Idempotency-Key."""

    def __init__(self, base: str, cluster: SentinelCluster):
        self.base = base
        self.cluster = cluster
        self.numbers = itertools.count()
        self.lock = threading.Lock()
        self.answers: collections.Counter[str] = collections.Counter()
        # (job id, when the 202 came, when its request was sent), monotonic.
        self.accepted: list[tuple[str, float, float]] = []
        self.problems: list[str] = []
        self.killed_at: float | None = None

    def run(self) -> None:
        """One client: submit until the 200 jobs are handed out."""
        with requests.Session() as session:
            while next(self.numbers) < JOBS:
                self.submit(session, str(uuid.uuid4()))
                time.sleep(0.02)

    def submit(self, session: requests.Session, key: str) -> None:
        """Submit one job until it is accepted (202); every other answer is counted."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                response = session.post(
                    f"{self.base}/jobs", json=JOB, headers={"Idempotency-Key": key}, timeout=30
                )
            except requests.RequestException as exc:
                self.count(f"no answer: {type(exc).__name__}")
                time.sleep(1)
                continue
            self.count(str(response.status_code))
            if response.status_code == 202:
                self.accept(response.json()["id"], sent)
                return
            if response.status_code == 503:
                retry_after = response.headers.get("Retry-After")
                if retry_after is None or not retry_after.isdigit():
                    self.problem(f"503 without a Retry-After in seconds: {retry_after!r}")
                    retry_after = "1"
                time.sleep(int(retry_after))
                continue
            self.problem(f"HTTP {response.status_code}: {response.text[:300]}")
            return
        self.problem(f"job with key {key} not accepted within 60 s")

    def count(self, answer: str) -> None:
        with self.lock:
            self.answers[answer] += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def accept(self, job_id: str, sent: float) -> None:
        with self.lock:
            self.accepted.append((job_id, time.monotonic(), sent))
            if len(self.accepted) == KILL_AFTER and self.killed_at is None:
                self.cluster.master.kill()
                self.killed_at = time.monotonic()


def wait_all_succeeded(base: str, job_ids: list[str]) -> dict[str, str]:
    """Poll every job until each is final (or the deadline); their last statuses."""
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + FINISH_WITHIN
    pending = list(job_ids)
    with requests.Session() as session:
        while pending and time.monotonic() < deadline:
            pending = _poll(session, base, pending, statuses)
            if pending:
                time.sleep(0.5)
    return statuses


def _poll(session: requests.Session, base: str, pending: list[str],
          statuses: dict[str, str]) -> list[str]:
    """One pass over the pending jobs; those still not final."""
    still = []
    for job_id in pending:
        response = session.get(f"{base}/jobs/{job_id}", timeout=10)
        if response.status_code == 200:
            statuses[job_id] = response.json()["status"]
            if statuses[job_id] in ("succeeded", "failed", "cancelled"):
                continue
        else:
            statuses[job_id] = f"HTTP {response.status_code}"
        still.append(job_id)
    return still


def test_jobs_survive_a_master_killed_mid_load(cluster: SentinelCluster, api: str) -> None:
    load = Load(api, cluster)
    started = time.monotonic()
    clients = [threading.Thread(target=load.run) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    submitted_in = time.monotonic() - started

    assert load.killed_at is not None, "the master was never killed"
    assert cluster.master_port() == cluster.replica.port, "the replica was not promoted"
    assert not load.problems, load.problems[:5]
    assert "500" not in load.answers
    ids = [job_id for job_id, _, _ in load.accepted]
    assert len(ids) == JOBS
    assert len(set(ids)) == len(ids), "one job id was accepted twice"

    statuses = wait_all_succeeded(api, ids)
    finished_at = time.monotonic()
    not_done = {i: s for i, s in statuses.items() if s != "succeeded"}
    missing = [i for i in ids if i not in statuses]
    assert not not_done and not missing, (list(not_done.items())[:5], missing[:5])

    settings = Settings(redis_sentinels=tuple(cluster.addresses.split(",")),
                        redis_master=cluster.master_name)
    with connect(settings) as client:
        counters = {k.decode(): int(v) for k, v in client.hgetall(keys.metric_counters()).items()}
    finished = {k: v for k, v in counters.items() if k.startswith("jobs_finished_total|")}
    assert finished == {metrics.finished_field("succeeded", metrics.NO_CODE): JOBS}
    # Jobs whose task the failover lost (popped on the old master, never delivered), given
    # their next tasks again by the workers' sweep.
    resumed = counters.get(metrics.RESUMED, 0)

    # The gap: from the kill to the first 202 for a request sent after it.
    after = [answered for _, answered, sent in load.accepted if sent > load.killed_at]
    gap = min(after) - load.killed_at if after else float("nan")
    print(
        f"\nfailover: 202 again {gap:.2f} s after the kill; answers {dict(load.answers)}; "
        f"200 jobs submitted in {submitted_in:.1f} s; all succeeded "
        f"{finished_at - load.killed_at:.1f} s after the kill; resumed by the sweep: "
        f"{resumed}; restarted: {RESTARTS}"
    )
