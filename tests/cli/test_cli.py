"""The emcoins command: its files, its one-line errors, and whole sessions on the real stack."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from cli.client import Client
from cli.main import cli, read_counts, read_draws, result_rows
from localstack.ports import free_port


def run(*args: str, api_url: str = "http://127.0.0.1:9", **kwargs):
    return CliRunner().invoke(cli, ["--api-url", api_url, *args], **kwargs)


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "emcoins"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert "submit" in done.stdout and "plot" in done.stdout


def test_connection_refused_is_one_line_and_exit_1():
    port = free_port()
    result = run("status", "abc", api_url=f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot connect to the API at http://127.0.0.1:{port} (is it running? "
        "set EMCOINS_API_URL or --api-url)"
    ]
    assert "Traceback" not in result.output


def test_submit_needs_exactly_one_data_option(tmp_path):
    result = run("submit")
    assert result.exit_code == 2
    assert "exactly one of --source, --file, --counts or --request" in result.output


def test_reading_draws_and_counts(tmp_path):
    draws = tmp_path / "draws.txt"
    draws.write_text("HTTH\n\n# a comment\nhhhh  \n")
    assert read_draws(draws) == ["HTTH", "hhhh"]
    counts = tmp_path / "counts.csv"
    counts.write_text("heads,flips\n3,10\n 8 , 10\n")
    assert read_counts(counts) == [[3, 10], [8, 10]]
    counts.write_text("heads,flips,count\n3,12,5\n9,12,1\n")
    assert read_counts(counts) == [[3, 12, 5], [9, 12, 1]]
    counts.write_text("3,10\n3;10\n")
    result = run("submit", "--counts", str(counts))
    assert result.exit_code == 2 and "line 2: expected heads,flips" in result.output
    counts.write_text("3,10\n3,10,1,1\n")
    result = run("submit", "--counts", str(counts))
    assert result.exit_code == 2 and "line 2: expected heads,flips" in result.output


def test_result_rows_round_to_three_places():
    rows = result_rows({"em": {"thetas": [0.12345], "weights": [1.0],
                               "standard_errors": [None]}})
    assert rows == [("EM", "1", "0.123", "1.000", "n/a")]


@pytest.fixture
def api(stack, monkeypatch) -> str:
    monkeypatch.setenv("EMCOINS_API_URL", stack.api_url)
    return stack.api_url


def _job(api_url: str, job_id: str) -> dict:
    return requests.get(f"{api_url}/jobs/{job_id}", timeout=10).json()


@pytest.mark.integration
def test_session_on_the_stack(stack, api, tmp_path):
    runner = CliRunner()
    source = f"{stack.drawsource_url}/draw"
    waited = runner.invoke(cli, ["submit", "--source", source, "--draws", "30",
                                 "--restarts", "3", "--seed", "7", "--wait"])
    assert waited.exit_code == 0, waited.output
    first_line = waited.stdout.splitlines()[0]
    job_id = first_line.split()[1].rstrip(":")
    job = _job(api, job_id)
    assert job["status"] == "succeeded"
    em = job["result"]["em"]
    table = waited.stdout.splitlines()
    em_rows = [line.split() for line in table if line.startswith("EM ")]
    assert [row[2] for row in em_rows] == [f"{t:.3f}" for t in em["thetas"]]
    assert [row[3] for row in em_rows] == [f"{w:.3f}" for w in em["weights"]]
    assert "fetching draws" in waited.stderr

    as_json = runner.invoke(cli, ["result", job_id, "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == job["result"]

    status = runner.invoke(cli, ["status", job_id])
    assert status.stdout.split() == [job_id, "succeeded", "30/30", "draws"]

    out = tmp_path / "fit.png"
    plotted = runner.invoke(cli, ["plot", job_id, "-o", str(out)])
    assert plotted.exit_code == 0, plotted.output
    with Image.open(out) as image:
        assert image.format == "PNG"
    assert out.read_bytes() == requests.get(f"{api}/jobs/{job_id}/plot.png", timeout=10).content

    again = runner.invoke(cli, ["cancel", job_id])
    assert again.exit_code == 1
    assert again.stderr.strip().startswith(f"Error: Job {job_id} already succeeded")
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_submit_prints_the_id_alone_and_cancel(stack, api, drawsource, tmp_path):
    slow = drawsource(latency_ms=200)
    runner = CliRunner()
    submitted = runner.invoke(cli, ["submit", "--source", slow, "--draws", "200"])
    assert submitted.exit_code == 0
    job_id = submitted.stdout.strip()
    assert _job(api, job_id)["id"] == job_id
    cancelled = runner.invoke(cli, ["cancel", job_id])
    assert cancelled.exit_code == 0 and cancelled.stdout.split() == [job_id, "cancelled"]
    assert _job(api, job_id)["status"] == "cancelled"
    pending = runner.invoke(cli, ["result", job_id])
    assert pending.exit_code == 1 and "cancelled" in pending.stderr


@pytest.mark.integration
def test_inline_files_and_api_errors(stack, api, tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text("".join(f"{h},10\n" for h in [1, 2, 2, 3, 8, 8, 9, 9]))
    runner = CliRunner()
    done = runner.invoke(cli, ["submit", "--counts", str(counts), "--seed", "1", "--wait"])
    assert done.exit_code == 0, done.output
    assert "8 draws, 2 coins" in done.stdout
    assert "fetching draws" not in done.stderr
    draws = tmp_path / "draws.txt"
    draws.write_text("HHHT\nTTHX\n")
    refused = runner.invoke(cli, ["submit", "--file", str(draws)])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: Some fields are invalid; see details. (draws.1:")
    missing = runner.invoke(cli, ["plot", "no-such-job"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "Error: No job no-such-job. [HTTP 404 not_found]"


def test_the_result_shows_the_work_of_em():
    from cli.main import format_result
    from shared.contract import JobResult, JobSpec
    from shared.fitting import fit_methods

    counts = [[2, 12, 24], [6, 12, 1343], [10, 12, 181], [4, 12, 670], [8, 12, 829]]
    spec = JobSpec(n_components="auto", max_components=2, weights="learn", restarts=4,
                   methods=("em",), seed=3)
    result = JobResult.merge(fit_methods(["em"], counts, spec, max_gmm_draws=10)).to_json()
    text = format_result({"id": "j", "progress": {"draws_total": 3047}, "result": result})
    em = result["em"]
    first_pair, first_probs = em["posteriors"]["pairs"][0], em["posteriors"]["probabilities"][0]
    assert first_pair == [6, 12, 1343]  # the most frequent draw comes first
    row = next(line for line in text.splitlines() if line.split()[:3] == ["6", "12", "1343"])
    assert row.split()[3:] == [f"{p:.3f}" for p in first_probs]
    assert f"{em['restart_summary']['at_best']} of 4 reached the best" in text
    assert "ICL" in text and f"{result['icl']['1']:.1f}" in text
    assert f"over {len(em['trajectory']['log_likelihood'])} iterations" in text


def test_a_request_file_is_sent_as_it_is_with_typed_options_on_top(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(Client, "submit", lambda self, body: sent.append(body) or {"id": "j"})
    request = tmp_path / "job.json"
    request.write_text('{"counts": [[1, 12, 3], [6, 12, 9]], "n_components": "auto", '
                       '"restarts": 4}')
    assert run("submit", "--request", str(request)).exit_code == 0
    assert sent[-1] == {"counts": [[1, 12, 3], [6, 12, 9]], "n_components": "auto",
                        "restarts": 4}
    assert run("submit", "--request", str(request), "--restarts", "7", "--seed", "2").exit_code == 0
    assert sent[-1]["restarts"] == 7 and sent[-1]["seed"] == 2
    assert sent[-1]["n_components"] == "auto"
    request.write_text("[1, 2]")
    result = run("submit", "--request", str(request))
    assert result.exit_code == 2 and "holds no JSON object" in result.output
