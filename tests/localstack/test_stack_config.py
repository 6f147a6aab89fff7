"""The local stack's settings: what passes through to the processes, and what the stack decides."""

import pytest

from localstack.stack import Stack, StackConfig


def test_ports_and_scale_come_from_the_environment():
    config = StackConfig.from_env({"API_PORT": "9000", "DRAWSOURCE_PORT": "0", "WORKERS": "3"})
    assert (config.api_port, config.drawsource_port, config.cpu_workers) == (9000, 0, 3)


def test_service_settings_pass_through_but_the_stack_places_the_draw_source():
    config = StackConfig.from_env(
        {"DRAWSOURCE_PORT": "0", "DRAWSOURCE_COINS": "0.1,0.9", "EMCOINS_MAX_DRAWS": "5",
         "HOME": "/root"}
    )
    assert config.env == {"DRAWSOURCE_PORT": "0", "DRAWSOURCE_COINS": "0.1,0.9",
                          "EMCOINS_MAX_DRAWS": "5"}
    stack = Stack(config)
    stack.drawsource_port = 12345  # as _claim_ports would pick for port 0
    env = stack.env()
    assert env["DRAWSOURCE_PORT"] == "12345" and env["DRAWSOURCE_COINS"] == "0.1,0.9"
    assert env["EMCOINS_MAX_DRAWS"] == "5"
    assert env["EMCOINS_SOURCE_ALLOWLIST"] == "http://127.0.0.1:12345"


def test_a_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="WORKERS must be an integer"):
        StackConfig.from_env({"WORKERS": "many"})
