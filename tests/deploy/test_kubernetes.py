"""deploy/kubernetes/ is a valid kustomize base that agrees with the code (no cluster here).

Every built-in manifest goes through ``kubernetes-validate --strict``. That tool passes a kind
it has no schema for with only a "Couldn't find schema" warning, so the test fails on that
warning, and checks KEDA's ScaledObjects itself, against the fields KEDA's documentation
gives for a ScaledObject and for its ``redis`` (Redis lists) scaler.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import Settings
from shared.taskqueue import CPU_QUEUE, IO_QUEUE, REPLICATES_QUEUE, worker_queues

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = yaml.safe_load((BASE / "kustomization.yaml").read_text())
FILES = sorted(BASE / name for name in KUSTOMIZATION["resources"])
DOCS = [(path, doc) for path in FILES for doc in yaml.safe_load_all(path.read_text()) if doc]
KEDA_API = "keda.sh/v1alpha1"
BUILT_IN = [(path, doc) for path, doc in DOCS if doc["apiVersion"] != KEDA_API]
SCALED_OBJECTS = [doc for _, doc in DOCS if doc["kind"] == "ScaledObject"]
NAMESPACE = KUSTOMIZATION["namespace"]

# KEDA's ScaledObject specification (keda.sh/docs/latest/reference/scaledobject-spec/).
SCALED_OBJECT_SPEC_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
SCALE_TARGET_FIELDS = {"apiVersion", "kind", "name", "envSourceContainerName"}
# KEDA's Redis Lists scaler, trigger type "redis" (keda.sh/docs/latest/scalers/redis-lists/).
REDIS_TRIGGER_FIELDS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "listName", "listLength", "activationListLength",
    "enableTLS", "unsafeSsl", "databaseIndex",
}


def resources(kind: str) -> dict[str, dict]:
    """The base's objects of ``kind``, by name."""
    return {doc["metadata"]["name"]: doc for _, doc in DOCS if doc["kind"] == kind}


def container(workload: dict) -> dict:
    """The one container of a Deployment or StatefulSet."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def option(command: list[str], flag: str) -> str:
    """The value after ``flag`` in a command line."""
    return command[command.index(flag) + 1]


CONFIG = resources("ConfigMap")["emcoins-config"]["data"]
SETTINGS = Settings.from_env({k: v for k, v in CONFIG.items() if k.startswith("EMCOINS_")})


def test_the_kustomization_lists_every_manifest_and_only_those():
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk


def validate(*paths: Path) -> subprocess.CompletedProcess:
    """``kubernetes-validate --strict`` over ``paths``, in one process."""
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def validation() -> subprocess.CompletedProcess:
    """One run of the validator over every built-in manifest."""
    return validate(*sorted({path for path, _ in BUILT_IN}))


def test_built_in_manifests_pass_strict_validation(validation):
    output = validation.stdout + validation.stderr
    assert validation.returncode == 0, output
    # A kind without a schema "passes" with only this warning: that would check nothing.
    assert "Couldn't find schema" not in output, output


@pytest.mark.parametrize(
    ("path", "doc"), BUILT_IN, ids=[f"{p.name}:{d['metadata']['name']}" for p, d in BUILT_IN]
)
def test_each_built_in_resource_was_validated(validation, path, doc):
    wanted = f"{path} passed for resource {doc['kind'].lower()}/{doc['metadata']['name']}"
    assert wanted in validation.stdout + validation.stderr


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    # The check above is worth something only if the validator is really strict.
    _, doc = next((p, d) for p, d in BUILT_IN if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["comand"] = ["true"]
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(broken))
    result = validate(manifest)
    assert result.returncode != 0, result.stdout + result.stderr


def test_the_base_has_the_api_the_workers_and_redis():
    deployments = resources("Deployment")
    assert {"api", "worker-io", "worker-cpu"} <= set(deployments)
    assert "api" in resources("Service")
    assert "redis" in resources("StatefulSet") and "redis" in resources("Service")


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "Service"])
def test_selectors_match_the_pod_labels(kind):
    pods = {
        name: workload["spec"]["template"]["metadata"]["labels"]
        for k in ("Deployment", "StatefulSet")
        for name, workload in resources(k).items()
    }
    for name, doc in resources(kind).items():
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [pod for pod, labels in pods.items() if selector.items() <= labels.items()]
        assert matched, f"{kind} {name} selects no pods"
        if kind != "Service":
            assert matched == [name], f"{kind} {name} selects {matched}"


def test_the_api_runs_the_app_factory_and_its_service_reaches_it():
    api = container(resources("Deployment")["api"])
    assert api["command"][0] == "gunicorn" and api["command"][-1] == "api:create_app()"
    assert option(api["command"], "-b").endswith(":8000")
    assert {"name": "http", "containerPort": 8000} in api["ports"]
    assert resources("Service")["api"]["spec"]["ports"][0]["targetPort"] == "http"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize(("name", "queue", "pool"), [
    ("worker-io", IO_QUEUE, "threads"), ("worker-cpu", CPU_QUEUE, "prefork"),
])
def test_workers_consume_their_queue_without_hoarding_it(name, queue, pool):
    command = container(resources("Deployment")[name])["command"]
    assert command[:4] == ["celery", "-A", "workers.celery_app", "worker"]
    assert option(command, "-Q") == queue and option(command, "-P") == pool
    # A worker holding a backlog of prefetched tasks would hide it from KEDA.
    assert "--prefetch-multiplier=1" in command


def test_the_settings_are_settings_the_code_reads():
    extra = {k for k in CONFIG if k.startswith("EMCOINS_")} - {
        "EMCOINS_" + name.upper() for name in Settings.model_fields
    }
    assert not extra
    assert urlsplit(SETTINGS.redis_url).hostname in resources("Service")


def test_workers_get_time_to_finish_their_longest_task():
    grace = {
        name: resources("Deployment")[name]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]
        for name in ("worker-io", "worker-cpu")
    }
    # The longest fetch task ends at the batch deadline; fits have no deadline of their own,
    # and the visibility timeout is set above the longest fit (see configmap.yaml).
    assert grace["worker-io"] >= SETTINGS.fetch_batch_deadline
    assert grace["worker-cpu"] >= SETTINGS.visibility_timeout
    assert SETTINGS.visibility_timeout > SETTINGS.fetch_batch_deadline


def test_there_is_one_scaled_object_per_worker_deployment():
    targets = sorted(so["spec"]["scaleTargetRef"]["name"] for so in SCALED_OBJECTS)
    assert targets == ["worker-cpu", "worker-io"]


@pytest.mark.parametrize("so", SCALED_OBJECTS, ids=lambda so: so["metadata"]["name"])
def test_scaled_objects_have_the_fields_keda_requires(so):
    assert so["apiVersion"] == KEDA_API and so["kind"] == "ScaledObject"
    assert so["metadata"]["name"]
    spec = so["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC_FIELDS, set(spec) - SCALED_OBJECT_SPEC_FIELDS
    target = spec["scaleTargetRef"]
    assert set(target) <= SCALE_TARGET_FIELDS and target["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] in resources("Deployment")
    for field in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        assert isinstance(spec.get(field, 0), int) and spec.get(field, 0) >= 0, field
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    if "idleReplicaCount" in spec:
        assert spec["idleReplicaCount"] < spec.get("minReplicaCount", 0)
    assert spec["triggers"], "a ScaledObject needs at least one trigger"


@pytest.mark.parametrize("so", SCALED_OBJECTS, ids=lambda so: so["metadata"]["name"])
def test_redis_triggers_measure_the_workers_own_queue(so):
    command = container(resources("Deployment")[so["spec"]["scaleTargetRef"]["name"]])["command"]
    for trigger in so["spec"]["triggers"]:
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert set(meta) <= REDIS_TRIGGER_FIELDS, set(meta) - REDIS_TRIGGER_FIELDS
        # Trigger metadata is a map of strings; a bare number is rejected by the CRD.
        assert all(isinstance(value, str) for value in meta.values()), meta
        assert meta["listName"] in worker_queues(option(command, "-Q").split(","))
        assert int(meta["listLength"]) >= 1
        assert int(meta["activationListLength"]) >= 0
        # Required: the server, as address (host:port) or host and port.
        assert "address" in meta or {"host", "port"} <= set(meta), meta
        host, _, port = meta["address"].rpartition(":")
        assert int(port) == 6379
        # KEDA's operator runs in its own namespace: a short name would not resolve there.
        assert host == f"redis.{NAMESPACE}.svc.cluster.local"
        assert int(meta.get("databaseIndex", "0")) == int(urlsplit(SETTINGS.redis_url).path[1:])


def test_the_cpu_workers_scale_from_zero_and_the_io_workers_never_reach_it():
    by_target = {so["spec"]["scaleTargetRef"]["name"]: so["spec"] for so in SCALED_OBJECTS}
    # The API is ready only while a worker answers a ping: keep one io worker.
    assert by_target["worker-io"]["minReplicaCount"] >= 1
    assert by_target["worker-cpu"].get("minReplicaCount", 0) == 0
    trigger = by_target["worker-cpu"]["triggers"][0]["metadata"]
    assert trigger["activationListLength"] == "0", "one waiting fit must wake a worker"


def test_the_cpu_workers_scale_on_waiting_replicate_chunks_too():
    by_target = {so["spec"]["scaleTargetRef"]["name"]: so["spec"] for so in SCALED_OBJECTS}
    lists = [t["metadata"]["listName"] for t in by_target["worker-cpu"]["triggers"]]
    assert lists == [CPU_QUEUE, REPLICATES_QUEUE]


def test_the_event_streams_run_in_their_own_gevent_deployment():
    events = container(resources("Deployment")["events"])
    assert events["command"][-1] == "api:create_events_app()"
    assert option(events["command"], "-k") == "gevent"
    assert option(events["command"], "-b").endswith(":8002")
    assert {"name": "http", "containerPort": 8002} in events["ports"]
    assert events["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert resources("Service")["events"]["spec"]["ports"][0]["targetPort"] == "http"
    api = container(resources("Deployment")["api"])
    assert option(api["command"], "-k") == "api.errors.JSONErrorWorker"
