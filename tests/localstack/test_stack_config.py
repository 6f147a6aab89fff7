"""The local stack's settings: what passes through to the processes, and what the stack decides."""

from pathlib import Path

import pytest

from localstack.stack import DEFAULT_DATA_DIR, Stack, StackConfig


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


def test_a_number_out_of_range_names_the_variable():
    with pytest.raises(ValueError, match="WORKERS must be at least 1"):
        StackConfig.from_env({"WORKERS": "0"})
    with pytest.raises(ValueError, match="API_PORT must be at most 65535"):
        StackConfig.from_env({"API_PORT": "70000"})


def test_an_empty_number_does_not_parse():
    # Unset means the default; set to empty means empty, which is not a number.
    assert StackConfig.from_env({}).api_port == 8000
    with pytest.raises(ValueError, match="API_PORT must be an integer, got ''"):
        StackConfig.from_env({"API_PORT": ""})


def test_only_the_stack_variables_are_read():
    # HOST or LOG_DIR set for some other program must not move the stack.
    config = StackConfig.from_env({"HOST": "0.0.0.0", "LOG_DIR": "/nowhere", "ENV": "prod"})
    assert config.host == "127.0.0.1" and config.log_dir is None and config.env == {}


def test_keyword_construction_reads_no_environment(monkeypatch):
    monkeypatch.setenv("API_PORT", "9999")
    monkeypatch.setenv("EMCOINS_DATA_DIR", "/somewhere")
    config = StackConfig(api_port=0)
    assert config.api_port == 0 and config.env == {}
    # Built in code (tests, benchmarks), a stack keeps its data in a temporary folder.
    assert config.data_dir is None


def test_the_data_folder_defaults_to_the_checkout(tmp_path):
    assert StackConfig.from_env({}).data_dir == DEFAULT_DATA_DIR
    assert DEFAULT_DATA_DIR == Path(__file__).resolve().parents[2] / ".emcoins"
    given = StackConfig.from_env({"EMCOINS_DATA_DIR": str(tmp_path / "data")})
    assert given.data_dir == tmp_path / "data"
    # Empty means none: a throwaway stack whose data go with it.
    assert StackConfig.from_env({"EMCOINS_DATA_DIR": ""}).data_dir is None


def test_the_data_folder_is_git_ignored():
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().splitlines()
    assert ".emcoins/" in ignored


def test_the_stack_authenticates_with_the_first_configured_token(monkeypatch):
    monkeypatch.delenv("EMCOINS_API_TOKENS", raising=False)
    assert Stack(StackConfig()).api_token is None
    config = StackConfig.from_env({"EMCOINS_API_TOKENS": "first-token,second-token"})
    assert Stack(config).api_token == "first-token"
