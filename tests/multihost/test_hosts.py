"""The service spread over several hosts, each a network namespace on a private bridge.

Hosts: ``redis`` (redis-server), ``source`` (the draw source), ``api`` (gunicorn), two
worker hosts ``w1`` and ``w2`` (an io and a cpu worker each) and ``client`` (where this
test's own HTTP requests come from). Every process runs inside its host's namespace
(``ip netns exec``) and reaches the others only through the bridge; the test talks from a
thread that entered the client namespace. Run with ``pytest -m multihost`` as root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

from localstack.processes import Service
from localstack.redis_server import redis_server_binary
from tests.multihost.netlab import Lab, NetnsExecutor, can_build_labs, existing_namespaces

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(900)]

# Shorter than the default 20 s, so that the take-over is quick, and still well above the
# longest task of these tests (the heavy fit, a few seconds).
VISIBILITY_TIMEOUT = 15
REDIS_PORT = 6379
API_PORT = 8000
SOURCE_PORT = 8001
FINAL = {"succeeded", "failed", "cancelled"}
INLINE = {"counts": [[3, 10], [7, 10], [2, 10], [8, 10]], "n_components": 2, "seed": 3}


def heavy_job(seed: int) -> dict:
    """An inline job whose one fit takes several seconds (about 19,000 distinct count pairs)."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(20, 2000, 20_000)
    heads = rng.binomial(flips, rng.choice([0.2, 0.5, 0.8], flips.size))
    counts = [[int(h), int(n)] for h, n in zip(heads, flips, strict=True)]
    return {"counts": counts, "methods": ["em"], "n_components": 3, "restarts": 40, "seed": seed}


@dataclass
class Cluster:
    """The running lab: hosts, their services, and a client inside the lab."""

    lab: Lab
    client: NetnsExecutor
    env: dict[str, str]
    log_dir: Path
    workers: dict[str, list[Service]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        """Base URL of the API, as seen from inside the lab."""
        return f"http://{self.lab.hosts['api']}:{API_PORT}"

    def http(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request from the client host."""
        return self.client.call(_request, method, self.api + path, **kwargs)

    def submit(self, body: dict) -> str:
        """POST a job; its path."""
        response = self.http("POST", "/jobs", json=body)
        assert response.status_code == 202, response.text
        return response.headers["Location"]

    def job(self, path: str) -> dict:
        """The job's current record."""
        response = self.http("GET", path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def wait(self, path: str, statuses: set[str] = FINAL, *, timeout: float = 120) -> dict:
        """Poll the job until its status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            body = self.job(path)
            if body["status"] in statuses:
                return body
            time.sleep(0.1)
        raise AssertionError(f"{path} not in {statuses} after {timeout} s: {body.get('status')}")

    def finished_count(self) -> float:
        """The service's count of succeeded jobs (Prometheus text from /metrics)."""
        text = self.http("GET", "/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("emcoins_jobs_finished_total{") and 'status="succeeded"' in line
        )

    def start_workers(self, host: str) -> list[Service]:
        """An io worker (threads) and a cpu worker (prefork, one process) on ``host``."""
        base = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                "--without-gossip", "--without-mingle", "--loglevel=INFO"]
        services = [
            self.lab.start(host, "io", [*base, "-Q", "io", "-P", "threads", "-c", "4",
                                        "-n", f"io@{host}"], env=self.env, log_dir=self.log_dir),
            self.lab.start(host, "cpu", [*base, "-Q", "cpu", "-P", "prefork", "-c", "1",
                                         "-n", f"cpu@{host}"], env=self.env, log_dir=self.log_dir),
        ]
        self.workers[host] = services
        return services

    def stop_workers(self, host: str) -> None:
        """Warm shutdown of ``host``'s workers (they are idle when the tests call this)."""
        for service in self.workers.pop(host, []):
            service.stop(timeout=30)

    def celery(self, *args: str) -> dict:
        """``celery inspect ...`` run on the client host; replies by node name ({} if none)."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.lab.ns("client"), sys.executable, "-m", "celery",
             "-A", "workers.celery_app", "inspect", *args, "--json", "--timeout", "2"],
            env=self.env, capture_output=True, text=True, timeout=60,
        )
        for line in reversed(result.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {}

    def wait_nodes(self, nodes: set[str], *, timeout: float = 60) -> float:
        """Wait until every node in ``nodes`` answers a ping; how long it took."""
        start = time.monotonic()
        answered: set[str] = set()
        while time.monotonic() - start < timeout:
            answered = set(self.celery("ping"))
            if nodes <= answered:
                return time.monotonic() - start
            time.sleep(0.5)
        raise AssertionError(f"{sorted(nodes - answered)} did not answer in {timeout} s")

    def logs(self) -> str:
        """The end of every service's log, for failure messages."""
        return "\n".join(
            f"--- {s.name}\n{s.log_tail(15)}" for s in self.lab.services if s.log_path.exists()
        )


def _request(method: str, url: str, **kwargs) -> requests.Response:
    # trust_env off: a proxy from the environment must never see the lab's traffic.
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, timeout=10, **kwargs)


def child_env(lab: Lab) -> dict[str, str]:
    """The environment of every process in the lab: no proxies, no outside settings."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith(("EMCOINS_", "DRAWSOURCE_"))
    }
    env.update(
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        EMCOINS_REDIS_URL=f"redis://{lab.hosts['redis']}:{REDIS_PORT}/0",
        EMCOINS_SOURCE_ALLOWLIST=f"http://{lab.hosts['source']}:{SOURCE_PORT}",
        EMCOINS_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        # A fetch batch must end well inside the visibility timeout.
        EMCOINS_FETCH_BATCH_DEADLINE="5",
        EMCOINS_FETCH_BATCH_SIZE="20",
        EMCOINS_LOG_FORMAT="text",
        DRAWSOURCE_HOST=lab.hosts["source"],
        DRAWSOURCE_PORT=str(SOURCE_PORT),
        DRAWSOURCE_SEED="11",
    )
    return env


def wait_for_line(service: Service, *words: str, timeout: float) -> float:
    """Wait until a line of ``service``'s log holds every word; when it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = service.log_path.read_text(errors="replace") if service.log_path.exists() else ""
        if any(all(word in line for word in words) for line in text.splitlines()):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{service.name} never logged {words}:\n{service.log_tail()}")


def wait_http(cluster: Cluster, url: str, service: Service, *, timeout: float = 60) -> None:
    """Poll ``url`` from the client host until it answers 200; fail early if ``service`` died."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        assert service.running(), f"{service.name} exited:\n{service.log_tail()}"
        try:
            response = cluster.client.call(_request, "GET", url)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout} s ({last})\n{cluster.logs()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Build the hosts, start every service, and remove it all afterwards."""
    reason = can_build_labs()
    if reason:
        pytest.fail(f"the multihost tests were selected but this machine cannot run them: {reason}")
    log_dir = tmp_path_factory.mktemp("multihost-logs")
    before = existing_namespaces()
    lab = Lab()
    client: NetnsExecutor | None = None
    try:
        lab.create()
        for host in ("redis", "source", "api", "w1", "w2", "client"):
            lab.add_host(host)
        client = lab.client("client")
        env = child_env(lab)
        running = Cluster(lab=lab, client=client, env=env, log_dir=log_dir)
        data = log_dir / "redis-data"
        data.mkdir()
        redis = lab.start("redis", "redis-server", [
            redis_server_binary(), "--bind", lab.hosts["redis"], "--port", str(REDIS_PORT),
            "--protected-mode", "no", "--dir", str(data), "--save", "", "--appendonly", "no",
        ], env=env, log_dir=log_dir)
        source = lab.start("source", "drawsource", [sys.executable, "-m", "drawsource"],
                           env=env, log_dir=log_dir)
        api = lab.start("api", "gunicorn", [
            sys.executable, "-m", "gunicorn", "-b", f"{lab.hosts['api']}:{API_PORT}",
            "-w", "1", "-k", "gthread", "--threads", "4", "--graceful-timeout", "5",
            "api:create_app()",
        ], env=env, log_dir=log_dir)
        running.start_workers("w1")
        running.start_workers("w2")
        wait_http(running, f"http://{lab.hosts['source']}:{SOURCE_PORT}/healthz", source)
        wait_http(running, f"{running.api}/healthz", api)
        assert redis.running(), redis.log_tail()
        running.wait_nodes({"io@w1", "cpu@w1", "io@w2", "cpu@w2"}, timeout=90)
        wait_http(running, f"{running.api}/readyz", api)
        yield running
    finally:
        if client is not None:
            client.close()
        lab.destroy()
        left = {name for name in existing_namespaces() - before if name.startswith(lab.tag)}
        assert not left, f"namespaces left behind: {left}"


def test_jobs_succeed_across_the_hosts(cluster):
    source_job = {"source": {"url": f"http://{cluster.lab.hosts['source']}:{SOURCE_PORT}/draw",
                             "draws": 100}, "seed": 5}
    paths = [cluster.submit(source_job) for _ in range(2)]
    paths += [cluster.submit(INLINE) for _ in range(4)]
    done = [cluster.wait(path) for path in paths]
    assert [job["status"] for job in done] == ["succeeded"] * len(paths), cluster.logs()
    # The two coins of the inline counts: heads fractions 0.2/0.3 and 0.7/0.8.
    thetas = sorted(done[-1]["result"]["em"]["thetas"])
    assert thetas == pytest.approx([0.25, 0.75], abs=0.05)
    assert done[0]["result"]["em"]["thetas"] and done[0]["progress"]["draws_fetched"] == 100


def test_a_cut_worker_host_hands_its_task_to_the_other_host(cluster):
    # Only w1 consumes while the job is submitted, so w1 holds its fit when its link goes.
    cluster.stop_workers("w2")
    succeeded_before = cluster.finished_count()
    body = heavy_job(seed=21)
    path = cluster.submit(body)
    job_id = path.rsplit("/", 1)[1]
    cpu_w1 = cluster.workers["w1"][1]
    received = wait_for_line(cpu_w1, f"{job_id}.fit", "received", timeout=60)

    cluster.lab.set_link("w1", up=False)
    cut = time.monotonic()
    # Nothing on w1 can write any more: a job unfinished now was still w1's when cut.
    status = cluster.job(path)["status"]
    assert status not in FINAL, f"the fit ended before the cut; lengthen it\n{cluster.logs()}"
    print(f"\ncut w1's link {cut - received:.2f} s after w1 received the fit (job {status})")
    cluster.start_workers("w2")
    done = cluster.wait(path, timeout=VISIBILITY_TIMEOUT + 30 + 30)
    took = time.monotonic() - cut
    print(f"take-over: the job succeeded {took:.1f} s after w1's link was cut "
          f"(visibility timeout {VISIBILITY_TIMEOUT} s)")
    assert done["status"] == "succeeded", (done, cluster.logs())
    assert took <= VISIBILITY_TIMEOUT + 30, f"took {took:.1f} s\n{cluster.logs()}"
    assert cluster.finished_count() == succeeded_before + 1

    # The link comes back: w1's workers rejoin, and its stale copy of the fit changes nothing.
    cluster.lab.set_link("w1", up=True)
    rejoined = cluster.wait_nodes({"io@w1", "cpu@w1"}, timeout=60)
    print(f"w1 answered pings again {rejoined:.1f} s after its link came back")
    assert all(service.running() for service in cluster.workers["w1"]), cluster.logs()
    time.sleep(VISIBILITY_TIMEOUT)
    again = cluster.job(path)
    assert again["finished_at"] == done["finished_at"] and again["result"] == done["result"]
    assert cluster.finished_count() == succeeded_before + 1, "the result was written twice"

    # w1 alone serves again: the same request, uninterrupted, gives the same estimates.
    cluster.stop_workers("w2")
    reference = cluster.wait(cluster.submit(body), timeout=120)
    assert reference["status"] == "succeeded", cluster.logs()
    assert reference["result"]["em"] == done["result"]["em"]
