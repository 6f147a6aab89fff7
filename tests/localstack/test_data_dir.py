"""The local stack keeps its jobs in a data folder: across restarts, one stack at a time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from localstack.__main__ import main
from localstack.datadir import LOCK_NAME, DataDirBusy, DataLock, empty_data_dir
from localstack.stack import Stack, StackConfig

FINAL = {"succeeded", "failed", "cancelled"}
JOB = {"counts": [[3, 10], [7, 10], [2, 10], [8, 10]], "n_components": 2}


def config(data_dir: Path, log_dir: Path, **changes) -> StackConfig:
    """A small stack (no draw source: the jobs give counts inline) on free ports."""
    values = dict(
        api_port=0,
        api_workers=1,
        cpu_concurrency=1,
        io_concurrency=2,
        start_drawsource=False,
        data_dir=data_dir,
        log_dir=log_dir,
    )
    return StackConfig(**{**values, **changes})


def submit(stack: Stack) -> str:
    response = requests.post(f"{stack.api_url}/jobs", json=JOB, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job(stack: Stack, job_id: str) -> dict:
    response = requests.get(f"{stack.api_url}/jobs/{job_id}", timeout=10)
    assert response.status_code in (200, 202), response.text
    return response.json()


def wait_final(stack: Stack, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = job(stack, job_id)
        if found["status"] in FINAL:
            return found
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {found['status']} after {timeout} s")


def submitted(stack: Stack) -> float:
    """The API's count of accepted jobs, from /metrics."""
    text = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("emcoins_jobs_submitted_total")
    )


def test_a_second_lock_on_a_folder_is_refused_until_the_first_is_released(tmp_path):
    with DataLock(tmp_path / "data"):
        with pytest.raises(DataDirBusy, match=r"another local stack \(pid \d+\)") as info:
            DataLock(tmp_path / "data").acquire()
        assert str(tmp_path / "data") in str(info.value)
        assert "EMCOINS_DATA_DIR" in str(info.value)
    DataLock(tmp_path / "data").acquire().release()


def test_cleaning_empties_the_folder_but_not_while_a_stack_holds_it(tmp_path):
    data = tmp_path / "data"
    (data / "appendonlydir").mkdir(parents=True)
    (data / "appendonlydir" / "appendonly.aof.1.incr.aof").write_text("*1\r\n")
    (data / "dump.rdb").write_text("x")
    with DataLock(data), pytest.raises(DataDirBusy):
        empty_data_dir(data)
    assert (data / "dump.rdb").exists()
    assert len(empty_data_dir(data)) == 2
    assert [p.name for p in data.iterdir()] == [LOCK_NAME]
    assert empty_data_dir(tmp_path / "never-made") == []


def test_make_clean_data_runs_the_same_code(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dump.rdb").write_text("x")
    monkeypatch.setenv("EMCOINS_DATA_DIR", str(data))
    with DataLock(data):
        assert main(["clean-data"]) == 1
    assert "another local stack" in capsys.readouterr().err
    assert main(["clean-data"]) == 0
    assert not (data / "dump.rdb").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_jobs_survive_a_restart_and_a_second_stack_is_refused(tmp_path):
    data = tmp_path / "data"
    with Stack(config(data, tmp_path / "logs-1")) as first:
        job_id = submit(first)
        before = wait_final(first, job_id)
        assert before["status"] == "succeeded"
        assert submitted(first) == 1
        # A second stack on the same folder stops before it starts anything.
        second = Stack(config(data, tmp_path / "logs-2"))
        with pytest.raises(DataDirBusy, match="is using the data folder"):
            second.start()
        assert second.redis is None and not second.services
    assert list(data.rglob("*.aof")), "Redis wrote no append-only file"
    with Stack(config(data, tmp_path / "logs-3")) as restarted:
        after = job(restarted, job_id)
        assert submitted(restarted) == 1
    assert after["status"] == "succeeded"
    assert after["result"] == before["result"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_job_unfinished_at_stop_finishes_after_the_next_start(tmp_path):
    data = tmp_path / "data"
    with Stack(config(data, tmp_path / "logs-1", start_workers=False)) as idle:
        job_id = submit(idle)
        time.sleep(0.5)
        assert job(idle, job_id)["status"] not in FINAL
    with Stack(config(data, tmp_path / "logs-2")) as working:
        assert wait_final(working, job_id)["status"] == "succeeded"
