"""End-to-end test of docker-compose.yml on a real engine: `make compose-test`.

Builds the image, starts the stack under a project name of its own with the API on a free
host port, and checks, in order:

1. after `build` and `up -d`, `/readyz` answers 200 (polled: docker-compose 1.29 has no
   `up --wait`);
2. a source job (draws from the bundled draw source) and an inline job succeed;
3. `--scale worker-cpu=3`: `celery inspect ping` counts three cpu workers, and jobs succeed;
4. jobs queued in Redis survive a stop and start of the Redis container (append-only file);
5. `--profile monitoring`: Flower's `/` answers 200 with the login the test set, 401 without;
6. `--profile ha` with EMCOINS_REDIS_SENTINELS naming the three sentinels (the app services
   are recreated with it, on the same image): once every sentinel knows the replica and the
   other two, an inline job succeeds; `redis` is killed, sentinel-1 is polled until it names
   `redis-replica`'s address, and jobs submitted then (a 503 retried after its Retry-After, with an
   Idempotency-Key) succeed. The failover time, as seen through compose, is reported.

`down -v` (with both profiles) runs at the end whatever happened, after printing the
services' logs on failure. Standard library only, so it runs with any Python 3.11 next to
`docker compose`.

Environment: COMPOSE (the compose command, default `docker compose`), COMPOSE_TEST_PROJECT
(default `emcoins-compose-test`), COMPOSE_TEST_SUBNET (the stack's EMCOINS_SUBNET, default
10.213.8: not the 10.213.7 of a stack the user may be running), COMPOSE_TEST_BUILD_TIMEOUT
(seconds, default 1800: a cold machine installs scikit-learn and the rest into the image).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = os.environ.get("COMPOSE_TEST_PROJECT", "emcoins-compose-test")
COMPOSE = [*shlex.split(os.environ.get("COMPOSE", "docker compose")), "-p", PROJECT]
BUILD_TIMEOUT = float(os.environ.get("COMPOSE_TEST_BUILD_TIMEOUT", "1800"))
FINAL = {"succeeded", "failed", "cancelled"}
INLINE_JOB = {"counts": [[3, 10], [7, 10], [2, 10], [8, 10]], "n_components": 2}
SOURCE_JOB = {"source": {"url": "http://drawsource:8001/draw", "draws": 30}}
CPU_WORKERS = 3
# The ha profile: the master name the sentinels monitor (EMCOINS_REDIS_MASTER's default),
# and the sentinels as the app services reach them.
SENTINEL_NAMES = ("sentinel-1", "sentinel-2", "sentinel-3")
SENTINELS = ",".join(f"{name}:26379" for name in SENTINEL_NAMES)
MASTER_NAME = "emcoins"
# docker-compose.yml gives `redis` and `redis-replica` these addresses in EMCOINS_SUBNET; the
# sentinels name the nodes by them.
SUBNET = os.environ.get("COMPOSE_TEST_SUBNET", "10.213.8")
MASTER_ADDRESS = f"{SUBNET}.10"
REPLICA_ADDRESS = f"{SUBNET}.11"
JOBS_AFTER_FAILOVER = 4
# Every profile the test starts: `ps`, `logs` and `down` must see all of their services.
PROFILES = ("--profile", "monitoring", "--profile", "ha")


class CheckFailed(AssertionError):
    """One of the checks did not hold."""


def log(message: str) -> None:
    """A progress line, flushed so that CI shows it as it happens."""
    print(f"[compose-test] {message}", flush=True)


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time one step and log its start and end."""
    log(f"{name} ...")
    start = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - start
        log(f"{name}: {timings[name]:.1f} s")


def free_port() -> int:
    """A host port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose(*args: str, timeout: float = 300, capture: bool = False) -> str:
    """Run one compose command; raise with its output if it fails."""
    argv = [*COMPOSE, *args]
    log("$ " + shlex.join(argv))
    # stderr is kept even when not captured (docker-compose writes its progress and its
    # errors there), so that a failure's exception carries the engine's own words.
    result = subprocess.run(
        argv, cwd=ROOT, timeout=timeout, text=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE,
    )
    if not capture and result.stderr:
        print(result.stderr, end="", file=sys.stderr, flush=True)
    if result.returncode != 0:
        detail = f"\n{result.stdout}" if capture else ""
        raise CheckFailed(
            f"{shlex.join(argv)} exited with {result.returncode}{detail}\n{result.stderr[-3000:]}"
        )
    return result.stdout or ""


# Each `up` that had to be run twice, with why: reported at the end, pass or fail.
UP_RETRIES: list[str] = []


def up(*args: str) -> None:
    """`compose up -d ...`, run a second time if the first fails. `up` converges on the same
    state when run again; a failure of both is a failure of the test. Why the retry: one CI
    run failed in the ha step's `up` within 8.6 s (its output was lost), and no local run of
    the test (8 runs, 4 of them with two CPU burners) failed so. The podman stand-in runs
    health checks from a loop while compose reads the same containers' state: a container
    inspected 600 times during `podman healthcheck run` calls once answered 'No such
    object' and 28 times 'starting', and compose gives up on the first error it gets while
    it waits for a dependency's health. The retry is logged with the first failure's output
    (stderr included) and counted in the final lines."""
    try:
        compose(*args)
    except CheckFailed as exc:
        UP_RETRIES.append(str(exc).strip())
        log(f"`up` failed, running it once more: {exc}")
        compose(*args)


class Http:
    """A tiny JSON client of one base URL, with optional basic auth."""

    def __init__(self, base: str, *, auth: str | None = None):
        self.base = base
        self.headers = {"Content-Type": "application/json"}
        if auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()

    def request(
        self, method: str, path: str, body: dict | None = None, *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict, str]:
        """Status, headers and text of one exchange (HTTP errors are answers too)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={**self.headers, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read(1 << 20).decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read(1 << 20).decode(errors="replace")

    def wait_status(self, path: str, want: int = 200, *, timeout: float) -> float:
        """Poll ``path`` until it answers ``want``; return how long that took."""
        start = time.monotonic()
        last = "no answer"
        while time.monotonic() - start < timeout:
            try:
                status, _, text = self.request("GET", path)
                if status == want:
                    return time.monotonic() - start
                last = f"{status} {text[:300]}"
            except OSError as exc:  # refused or reset while the service starts
                last = repr(exc)
            time.sleep(1)
        raise CheckFailed(f"GET {self.base}{path} did not answer {want} in {timeout:.0f} s: {last}")


def submit(api: Http, body: dict) -> str:
    """POST a job; return the path of the job from the Location header."""
    status, headers, text = api.request("POST", "/jobs", body)
    if status != 202:
        raise CheckFailed(f"POST /jobs answered {status}: {text[:500]}")
    return headers["Location"]


def submit_retrying(api: Http, body: dict, *, timeout: float) -> tuple[str, int]:
    """POST a job until it is accepted, retrying a 503 after its Retry-After (and a refused
    connection after a second) under one Idempotency-Key, so that a retry of a request that
    was stored after all cannot make a second job. The job's path and the 503s seen."""
    key = secrets.token_hex(16)
    deadline = time.monotonic() + timeout
    unavailable = 0
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, headers, text = api.request(
                "POST", "/jobs", body, headers={"Idempotency-Key": key}
            )
        except OSError as exc:  # the API restarting under us; try again
            last = repr(exc)
            time.sleep(1)
            continue
        if status == 202:
            return headers["Location"], unavailable
        if status != 503:
            raise CheckFailed(f"POST /jobs answered {status}: {text[:500]}")
        unavailable += 1
        retry_after = headers.get("Retry-After", "")
        if not retry_after.isdigit():
            raise CheckFailed(f"a 503 without Retry-After in seconds: {retry_after!r}")
        last = f"503 {text[:300]}"
        time.sleep(min(int(retry_after), 10))
    raise CheckFailed(f"POST /jobs not accepted in {timeout:.0f} s: {last}")


def wait_jobs(api: Http, paths: list[str], *, timeout: float) -> None:
    """Poll every job until final; fail unless all succeeded in time."""
    deadline = time.monotonic() + timeout
    pending = dict.fromkeys(paths, "unknown")
    while pending and time.monotonic() < deadline:
        for path in list(pending):
            try:
                status, _, text = api.request("GET", path)
            except OSError as exc:  # the API restarting under us; try again
                pending[path] = repr(exc)
                continue
            if status != 200:
                pending[path] = f"HTTP {status}"  # 503 while Redis restarts
                continue
            job = json.loads(text)
            if job["status"] in FINAL:
                if job["status"] != "succeeded":
                    raise CheckFailed(f"{path} ended {job['status']}: {job.get('error')}")
                del pending[path]
            else:
                pending[path] = job["status"]
        time.sleep(0.5)
    if pending:
        raise CheckFailed(f"jobs not succeeded after {timeout:.0f} s: {pending}")


def celery_json(command: str) -> dict:
    """`celery inspect <command> --json` run in the api container, as a dict by node name."""
    out = compose(
        "exec", "-T", "api", "celery", "-A", "workers.celery_app", "inspect", command,
        "--json", "--timeout", "5", timeout=120, capture=True,
    )
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise CheckFailed(f"no JSON in `celery inspect {command}`: {out[:500]}")


def cpu_workers_answering() -> set[str]:
    """Workers that answer `inspect ping` and consume the cpu queue (none if the inspect
    command fails: podman's DNS can miss a lookup of `redis` while containers are added)."""
    try:
        replies = celery_json("ping")
        queues = celery_json("active_queues")
    except CheckFailed as exc:  # asked again until the step's deadline
        log(str(exc).strip())
        return set()
    pinged = {node for node, reply in replies.items() if reply.get("ok") == "pong"}
    return {
        node for node in pinged
        if any(queue.get("name") == "cpu" for queue in queues.get(node) or [])
    }


def queue_depth(api: Http, queue: str) -> float:
    """The API's `emcoins_queue_depth{queue=...}` figure."""
    _, _, text = api.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(f'emcoins_queue_depth{{queue="{queue}"}}'):
            return float(line.split()[-1])
    raise CheckFailed(f"/metrics has no queue depth for {queue}")


def sentinel_views() -> dict[str, dict[str, str]]:
    """Each sentinel's `SENTINEL master` fields merged with its `INFO sentinel`, and the
    replica's `INFO replication` under ``redis-replica``, read by one `exec` in sentinel-1
    (an exec takes a second or more)."""
    commands = []
    for name in SENTINEL_NAMES:
        commands += [
            f"echo '== {name}'; redis-cli -h {name} -p 26379 SENTINEL master {MASTER_NAME}",
            f"echo '== {name} info'; redis-cli -h {name} -p 26379 info sentinel",
        ]
    commands.append("echo '== redis-replica info'; redis-cli -h redis-replica info replication")
    out = compose(
        "exec", "-T", "sentinel-1", "sh", "-c", "; ".join(commands), timeout=60, capture=True
    )
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("== "):
            sections[line[3:]] = []
        elif line.strip() and sections:
            sections[next(reversed(sections))].append(line.strip())
    views: dict[str, dict[str, str]] = {}
    for section, found in sections.items():
        name, _, kind = section.partition(" ")
        view = views.setdefault(name, {})
        if kind == "info":  # key:value lines
            view.update(line.partition(":")[::2] for line in found if ":" in line)
        else:  # SENTINEL master: key, value, key, value ...
            view.update(zip(found[::2], found[1::2], strict=False))
    return views


def sentinels_ready() -> tuple[bool, str]:
    """Whether a failover could happen now: every sentinel sees the master up with the
    replica and the other two sentinels and is out of TILT mode, and the replica is in sync.
    And what was seen.

    TILT: a sentinel whose event loop stalled for over 2 s does nothing for 30 s, not even
    mark the master down; a master killed then is marked down so late that the replica,
    disconnected for longer than 10 x down-after-milliseconds, is refused ("no good slave").
    The sentinels name the nodes by address (docker-compose.yml says why), so DNS no longer
    stalls them, but a loaded machine still can."""
    try:
        views = sentinel_views()
    except CheckFailed as exc:  # a node still starting: redis-cli (so the exec) fails
        return False, str(exc)
    seen = []
    ready = True
    for name in SENTINEL_NAMES:
        view = views.get(name, {})
        seen.append(f"{name}: {view.get('flags')} {view.get('ip')}, "
                    f"{view.get('num-slaves')} replica, {view.get('num-other-sentinels')} others"
                    f", tilt {view.get('sentinel_tilt')}")
        ready = ready and (
            view.get("sentinel_tilt") == "0"
            and view.get("flags") == "master" and view.get("ip") == MASTER_ADDRESS
            and view.get("num-slaves") == "1"
            and view.get("num-other-sentinels") == str(len(SENTINEL_NAMES) - 1)
        )
    link = views.get("redis-replica", {}).get("master_link_status")
    seen.append(f"redis-replica: link {link}")
    return ready and link == "up", "; ".join(seen)


def master_named_by_sentinel() -> str:
    """The master's host as sentinel-1 names it (empty if it answers nothing)."""
    try:
        out = compose(
            "exec", "-T", "sentinel-1", "redis-cli", "-p", "26379", "SENTINEL",
            "get-master-addr-by-name", MASTER_NAME, timeout=60, capture=True,
        )
    except CheckFailed as exc:  # polled again until the deadline, which reports it
        log(str(exc))
        return ""
    lines = out.split()
    return lines[0] if lines else ""


def switch_logged_at() -> float | None:
    """When sentinel-1 logged `+switch-master` (epoch seconds), if it did. Redis logs the
    container's time, UTC unless TZ is set, to the millisecond."""
    out = compose("logs", "--no-color", "sentinel-1", timeout=60, capture=True)
    found = re.findall(r"(\d+ \w{3} \d{4} [\d:]{8}\.\d{3}) # \+switch-master ", out)
    if not found:
        return None
    when = datetime.strptime(found[-1], "%d %b %Y %H:%M:%S.%f").replace(tzinfo=UTC)
    return when.timestamp()


def print_sentinel_events() -> None:
    """The sentinels' logs without their one-line-a-second complaint about the killed
    `redis` (which would push the failover's events out of `logs --tail`)."""
    out = compose(*PROFILES, "logs", "--no-color", *SENTINEL_NAMES, timeout=60, capture=True)
    for line in out.splitlines():
        if "Failed to resolve hostname" not in line:
            print(line, flush=True)


def take_down(attempts: int = 3) -> None:
    """`down -v`, again if a container that was restarting at the time survived it."""
    for attempt in range(1, attempts + 1):
        try:
            compose(*PROFILES, "down", "-v", "--remove-orphans", timeout=300)
            return
        except (CheckFailed, subprocess.TimeoutExpired):
            if attempt == attempts:
                raise
            time.sleep(2)


def run_checks(api: Http, flower_auth: str, timings: dict[str, float]) -> None:
    """The checks, in order; each raises CheckFailed."""
    with step("build", timings):
        # Every app service names the one image; `up --build` would build it once per
        # service (docker-compose 1.29 does not share the build), so build it once here.
        compose("build", "api", timeout=BUILD_TIMEOUT)
    with step("start", timings):
        up("up", "-d")
    with step("ready", timings):
        api.wait_status("/readyz", timeout=180)

    with step("a source job and an inline job", timings):
        wait_jobs(api, [submit(api, SOURCE_JOB), submit(api, INLINE_JOB)], timeout=120)

    with step(f"scale worker-cpu={CPU_WORKERS}", timings):
        up("up", "-d", "--scale", f"worker-cpu={CPU_WORKERS}", "--no-recreate")
        deadline = time.monotonic() + 120
        found = cpu_workers_answering()
        while len(found) < CPU_WORKERS and time.monotonic() < deadline:
            time.sleep(2)
            found = cpu_workers_answering()
        if len(found) != CPU_WORKERS:
            raise CheckFailed(f"expected {CPU_WORKERS} cpu workers to answer, got {sorted(found)}")
        log(f"cpu workers answering: {sorted(found)}")
        jobs = [submit(api, INLINE_JOB) for _ in range(6)] + [submit(api, SOURCE_JOB)]
        wait_jobs(api, jobs, timeout=180)

    with step("Redis stopped and started with jobs queued", timings):
        # With the fitting workers stopped, the jobs are certainly waiting in Redis.
        compose("stop", "worker-cpu")
        queued = [submit(api, INLINE_JOB) for _ in range(4)] + [submit(api, SOURCE_JOB)]
        deadline = time.monotonic() + 60
        while queue_depth(api, "cpu") < len(queued) and time.monotonic() < deadline:
            time.sleep(0.5)
        depth = queue_depth(api, "cpu")
        log(f"cpu queue depth before the Redis stop: {depth:.0f}")
        if depth < len(queued):
            raise CheckFailed(f"expected {len(queued)} fits queued, /metrics says {depth}")
        compose("stop", "redis")
        compose("start", "redis")
        compose("start", "worker-cpu")
        wait_jobs(api, queued, timeout=240)
        api.wait_status("/readyz", timeout=120)

    with step("Flower under the monitoring profile", timings):
        up("--profile", "monitoring", "up", "-d", "--no-recreate", "flower")
        mapped = compose("port", "flower", "5555", capture=True).strip().splitlines()[-1]
        port = int(mapped.rsplit(":", 1)[1])
        Http(f"http://127.0.0.1:{port}", auth=flower_auth).wait_status("/", timeout=120)
        # FLOWER_BASIC_AUTH reached Flower: without the password it refuses.
        status, _, _ = Http(f"http://127.0.0.1:{port}").request("GET", "/")
        if status != 401:
            raise CheckFailed(f"Flower answered {status} without credentials, expected 401")

    ha_checks(api, timings)


def ha_checks(api: Http, timings: dict[str, float]) -> None:
    """The ha profile: Redis found through the sentinels, and its master killed."""
    with step("start with the ha profile", timings):
        # Every later compose command sees it too, so `up` recreates the app services with
        # it (same image, no build) and `down` reads the same configuration.
        os.environ["EMCOINS_REDIS_SENTINELS"] = SENTINELS
        # The sentinels last, when the machine is quiet again (see sentinels_ready on TILT).
        # The old app containers are idle: 3 s to stop them, not 10.
        services = compose("--profile", "ha", "config", "--services", capture=True).split()
        up("--profile", "ha", "up", "-d", "--timeout", "3",
           *[name for name in services if name not in SENTINEL_NAMES])
        up("--profile", "ha", "up", "-d", *SENTINEL_NAMES)
        deadline = time.monotonic() + 120
        ready, seen = sentinels_ready()
        while not ready and time.monotonic() < deadline:
            time.sleep(1)
            ready, seen = sentinels_ready()
        if not ready:
            raise CheckFailed(f"the sentinels are not ready for a failover after 120 s: {seen}")
        log(seen)
        api.wait_status("/readyz", timeout=180)

    with step("an inline job through the sentinels", timings):
        wait_jobs(api, [submit_retrying(api, INLINE_JOB, timeout=60)[0]], timeout=120)

    with step("the Redis master killed", timings):
        killed, killed_wall = time.monotonic(), time.time()
        compose("kill", "redis")
        kill_took = time.monotonic() - killed
        deadline = killed + 60
        master = master_named_by_sentinel()
        while master != REPLICA_ADDRESS and time.monotonic() < deadline:
            time.sleep(0.2)
            master = master_named_by_sentinel()
        if master != REPLICA_ADDRESS:
            raise CheckFailed(f"60 s after the kill sentinel-1 names {master!r} as the master, "
                              f"not redis-replica ({REPLICA_ADDRESS})")
        timings["failover: sentinel-1 names redis-replica"] = time.monotonic() - killed
        first, unavailable = submit_retrying(api, INLINE_JOB, timeout=60)
        timings["failover: the API accepts a job"] = time.monotonic() - killed
        jobs = [first]
        for _ in range(JOBS_AFTER_FAILOVER - 1):
            path, more = submit_retrying(api, INLINE_JOB, timeout=60)
            jobs.append(path)
            unavailable += more
        if len(set(jobs)) != len(jobs):
            raise CheckFailed(f"two submissions were given the same job: {jobs}")
        # Polling through `exec` takes a second or more a round; the sentinel's own log
        # says when the switch happened.
        switched = switch_logged_at()
        logged = "no +switch-master in its log"
        if switched is not None:
            timings["failover: sentinel-1 logs +switch-master"] = switched - killed_wall
            logged = f"+switch-master logged after {switched - killed_wall:.1f} s"
        log(f"after `kill redis` was sent (it returned after {kill_took:.1f} s): sentinel-1 "
            f"{logged}, named redis-replica when polled after "
            f"{timings['failover: sentinel-1 names redis-replica']:.1f} s; the API accepted "
            f"a job after {timings['failover: the API accepts a job']:.1f} s "
            f"({unavailable} answers were 503)")
        wait_jobs(api, jobs, timeout=120)


def main() -> int:
    """Run the checks against a fresh project; always take it down."""
    port = int(os.environ.get("API_PORT") or 0) or free_port()
    flower_auth = os.environ.get("FLOWER_BASIC_AUTH") or f"ci:{secrets.token_hex(8)}"
    os.environ.update(API_PORT=str(port), EVENTS_PORT=str(free_port()), EMCOINS_SUBNET=SUBNET,
                      FLOWER_BASIC_AUTH=flower_auth)
    # The first steps reach `redis` directly; the ha step sets the sentinels itself.
    os.environ.pop("EMCOINS_REDIS_SENTINELS", None)
    # docker-compose 1.29 gives up on a slow engine after 60 s by default.
    os.environ.setdefault("COMPOSE_HTTP_TIMEOUT", "300")
    # `docker compose down` must run on SIGTERM (a CI timeout) as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    timings: dict[str, float] = {}
    api = Http(f"http://127.0.0.1:{port}")
    failed = True
    reason = ""
    try:
        run_checks(api, flower_auth, timings)
        failed = False
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        reason = str(exc)
        log(f"FAILED: {reason}")
    finally:
        if failed:
            with contextlib.suppress(Exception):
                compose(*PROFILES, "ps")
                compose(*PROFILES, "logs", "--no-color", "--tail=60")
                if os.environ.get("EMCOINS_REDIS_SENTINELS"):  # the ha step had begun
                    print_sentinel_events()
        with step("down -v", timings):
            take_down()
    log(f"`up` run twice: {len(UP_RETRIES)} time(s)" + "".join(f"\n  {why}" for why in UP_RETRIES))
    log("timings: " + ", ".join(f"{name} {took:.1f} s" for name, took in timings.items()))
    # The reason again last: the services' logs above push the first report out of a
    # CI log's tail.
    log(f"FAILED: {reason}" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
