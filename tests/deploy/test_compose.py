"""docker-compose.yml and the Dockerfile agree with the code (no Docker engine runs here)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from drawsource.config import DrawSourceConfig
from shared.config import Settings
from shared.taskqueue import CPU_QUEUE, FETCH, FIT, IO_QUEUE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["drawsource", "api", "worker-io", "worker-cpu", "flower"]


def module_of(command: list[str]) -> str:
    """The Python module a service's command runs."""
    if command[:2] == ["python", "-m"]:
        return command[2]
    if command[0] == "celery":
        return command[command.index("-A") + 1]
    if command[0] == "gunicorn":
        return command[-1].split(":")[0]
    raise AssertionError(f"unrecognised command {command}")


def test_the_services_the_issue_names_exist():
    assert {"redis", "drawsource", "api", "worker-io", "worker-cpu"} <= set(SERVICES)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_command_names_a_module_that_exists(name):
    module = module_of(SERVICES[name]["command"])
    assert importlib.util.find_spec(module) is not None, module


def test_the_api_factory_is_what_gunicorn_calls():
    import api

    command = SERVICES["api"]["command"]
    assert command[-1] == "api:create_app()" and callable(api.create_app)
    # The host port is API_PORT (default 8000), so the compose test can pick a free one.
    assert "${API_PORT:-8000}:8000" in SERVICES["api"]["ports"]


def test_workers_listen_on_the_queues_tasks_are_routed_to():
    from workers.celery_app import app

    routes = app.conf.task_routes
    io_cmd, cpu_cmd = SERVICES["worker-io"]["command"], SERVICES["worker-cpu"]["command"]
    assert io_cmd[io_cmd.index("-Q") + 1] == IO_QUEUE == routes[FETCH]["queue"]
    assert cpu_cmd[cpu_cmd.index("-Q") + 1] == CPU_QUEUE == routes[FIT]["queue"]
    assert io_cmd[io_cmd.index("-P") + 1] == "threads"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_names_are_settings_the_code_reads(name):
    emcoins = {"EMCOINS_" + name.upper() for name in Settings.model_fields}
    drawsource = {"DRAWSOURCE_" + name.upper() for name in DrawSourceConfig.model_fields}
    # Flower reads its own FLOWER_* variables.
    third_party = {"FLOWER_BASIC_AUTH"} if name == "flower" else set()
    for variable in SERVICES[name].get("environment", {}):
        assert variable in emcoins | drawsource | third_party, (
            f"{name} sets {variable}, which nothing reads"
        )


def test_the_env_values_parse():
    Settings.from_env(SERVICES["api"]["environment"])
    DrawSourceConfig.from_env(SERVICES["drawsource"]["environment"])
    assert SERVICES["api"]["environment"]["EMCOINS_REDIS_URL"].startswith("redis://redis:")


def test_redis_is_private_durable_and_checked():
    redis = SERVICES["redis"]
    assert "ports" not in redis
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert redis["healthcheck"]["test"]


@pytest.mark.parametrize("name", ["redis", *APP_SERVICES])
def test_every_service_is_restarted_when_it_exits(name):
    # kombu can take a worker down when Redis restarts under it; the restart brings it back.
    assert SERVICES[name]["restart"] == "unless-stopped"


def test_cpu_workers_can_be_scaled():
    worker = SERVICES["worker-cpu"]
    # A fixed container name or host port would stop `--scale worker-cpu=4`.
    assert "container_name" not in worker and "ports" not in worker


def test_flower_sits_behind_the_monitoring_profile():
    assert SERVICES["flower"]["profiles"] == ["monitoring"]


def test_flower_login_is_passed_through_and_its_port_stays_on_this_machine():
    flower = SERVICES["flower"]
    # No value: compose passes the shell's FLOWER_BASIC_AUTH, and leaves it unset when the
    # shell has none. An empty default would switch Flower's login on with no user.
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] is None
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_dockerfile_runs_as_a_non_root_user_and_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    for package in ("shared", "api", "workers", "drawsource"):
        assert re.search(rf"^COPY {package} ", dockerfile, flags=re.M), package
    assert not re.search(r"(TOKEN|SECRET|PASSWORD)\s*=", dockerfile)
