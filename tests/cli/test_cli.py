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


BOOTSTRAP = {"replicates": 200, "kind": "parametric", "level": 0.9,
             "thetas": [[0.2113, 0.2871], [0.7012, 0.7968]],
             "weights": [[0.3104, 0.4921], [0.5079, 0.6896]], "failed": 2, "ambiguous": 5}
COMPONENTS_TEST = {"replicates": 99, "tests": [{"k": 1, "statistic": 41.237, "p_value": 0.01},
                                               {"k": 2, "statistic": 1.904, "p_value": 0.43}],
                   "selected": 2}


def analysed_job(*, n_components: int | str = 2) -> dict:
    """A finished job whose result has both analyses, in the JSON form of issue 11."""
    from tests.factories import plotted_result

    result = plotted_result().to_json()
    result["em"]["bootstrap"] = BOOTSTRAP
    result["components_test"] = COMPONENTS_TEST
    result["bic"] = {"1": 30.25, "2": 21.5, "3": 24.75}
    return {"id": "j", "status": "succeeded", "spec": {"n_components": n_components},
            "progress": {"draws_fetched": 12, "draws_total": 12}, "result": result}


def test_the_result_shows_intervals_beside_the_estimates_and_the_test():
    from cli.main import format_result

    lines = format_result(analysed_job(n_components="auto")).splitlines()
    header = lines[1].split()
    assert header == ["method", "coin", "bias/mean", "90%", "interval", "weight", "90%",
                      "interval", "std", "err/sigma"]
    em_rows = [line.split() for line in lines if line.startswith("EM ")]
    # plotted_result: thetas 0.25 and 0.75, weights 0.4 and 0.6, standard errors 0.04, 0.05.
    assert em_rows == [
        ["EM", "1", "0.250", "[0.211,", "0.287]", "0.400", "[0.310,", "0.492]", "0.040"],
        ["EM", "2", "0.750", "[0.701,", "0.797]", "0.600", "[0.508,", "0.690]", "0.050"],
    ]
    gmm_rows = [line.split() for line in lines if line.startswith("GMM ")]
    assert gmm_rows[0] == ["GMM", "1", "0.240", "0.420", "0.050"]
    assert ("intervals: 90% percentile, from 200 parametric bootstrap replicates" in lines)
    assert "  2 failed to fit; 5 ambiguous" in "\n".join(lines)
    assert "choosing K (lower is better; K is chosen by the test below):" in lines
    start = lines.index(next(line for line in lines if line.startswith("number of coins")))
    assert "(99 replicates each)" in lines[start]
    assert [line.split() for line in lines[start + 1:start + 4]] == [
        ["coins", "statistic", "p-value"],
        ["1", "vs", "2", "41.24", "0.010"],
        ["2", "vs", "3", "1.90", "0.430", "selected"],
    ]
    assert lines[start + 4] == ("selected: 2 coins, the first test not significant at 0.05 "
                                "(fitted)")


def test_a_test_that_only_reports_and_one_significant_to_the_end():
    from cli.main import format_result

    job = analysed_job(n_components=3)
    job["result"]["components_test"] = {**COMPONENTS_TEST, "selected": 3, "tests": [
        {"k": 1, "statistic": 41.2, "p_value": 0.01}, {"k": 2, "statistic": 9.5, "p_value": 0.02}]}
    text = format_result(job)
    assert "K is chosen by BIC" in text
    assert "selected" not in " ".join(line for line in text.splitlines() if " vs " in line)
    assert ("selected: 3 coins, every test up to the largest K allowed was significant at 0.05 "
            "(reported only; the fit keeps its K)") in text


def test_the_analyses_options_build_the_request(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(Client, "submit", lambda self, body: sent.append(body) or {"id": "j"})
    counts = tmp_path / "counts.csv"
    counts.write_text("3,10\n8,10\n")
    done = run("submit", "--counts", str(counts), "--bootstrap", "500", "--bootstrap-kind",
               "parametric", "--level", "0.9", "--test-components", "3", "--test-replicates",
               "49")
    assert done.exit_code == 0, done.output
    assert sent[-1]["bootstrap"] == {"replicates": 500, "kind": "parametric", "level": 0.9}
    assert sent[-1]["test_components"] == {"max_components": 3, "replicates": 49}
    # Options not typed are left to the API's defaults.
    assert run("submit", "--counts", str(counts), "--bootstrap", "20").exit_code == 0
    assert sent[-1]["bootstrap"] == {"replicates": 20} and "test_components" not in sent[-1]
    # A request file's analysis takes the typed options on top of its own.
    request = tmp_path / "job.json"
    request.write_text('{"counts": [[3, 10], [8, 10]], "bootstrap": {"replicates": 100, '
                       '"kind": "nonparametric"}, "test_components": {"max_components": 4, '
                       '"replicates": 19}}')
    assert run("submit", "--request", str(request), "--level", "0.8",
               "--test-replicates", "39").exit_code == 0
    assert sent[-1]["bootstrap"] == {"replicates": 100, "kind": "nonparametric", "level": 0.8}
    assert sent[-1]["test_components"] == {"max_components": 4, "replicates": 39}
    sent.clear()
    alone = run("submit", "--counts", str(counts), "--level", "0.9", "--bootstrap-kind",
                "parametric")
    assert alone.exit_code == 2
    assert "--bootstrap-kind and --level need --bootstrap" in alone.output
    alone = run("submit", "--counts", str(counts), "--test-replicates", "9")
    assert alone.exit_code == 2 and "--test-replicates needs --test-components" in alone.output
    for wrong in (["--level", "1"], ["--bootstrap", "0"], ["--test-components", "1"]):
        assert run("submit", "--counts", str(counts), "--bootstrap", "5", *wrong).exit_code == 2
    assert sent == []


def test_status_and_wait_show_the_replicates_done(monkeypatch):
    from cli.client import StreamEvent

    running = {"id": "j", "status": "fitting", "spec": {"source": None},
               "progress": {"draws_fetched": 12, "draws_total": 12,
                            "replicates": {"done": 120, "total": 2000, "stage": None,
                                           "analysis": "bootstrap"}}}
    monkeypatch.setattr(Client, "job", lambda self, job_id: running)
    status = run("status", "j")
    assert status.stdout.split() == ["j", "fitting", "12/12", "draws", "bootstrap:",
                                     "120/2000", "replicates"]
    running["progress"]["replicates"] = {"done": 7, "total": 99, "stage": 2,
                                         "analysis": "components_test"}
    assert run("status", "j").stdout.split()[4:] == [
        "test", "of", "2", "vs", "3", "coins:", "7/99", "replicates"]

    def count(analysis, stage, total):
        return [StreamEvent("progress", {"draws_fetched": 12, "draws_total": 12, "replicates": {
            "done": done, "total": total, "stage": stage, "analysis": analysis}})
                for done in (0, total // 2, total)]

    # Two stages of the test, then the bootstrap: a bar each.
    events = [*count("components_test", 1, 20), *count("components_test", 2, 20),
              *count("bootstrap", None, 40), StreamEvent("done", analysed_job())]
    monkeypatch.setattr(Client, "follow", lambda self, job_id, timeout: iter(events))
    waited = run("wait", "j")
    assert waited.exit_code == 0, waited.output
    assert waited.stderr.splitlines() == [
        "fitting...", "test of 1 vs 2 coins: replicates", "test of 2 vs 3 coins: replicates",
        "bootstrap: replicates"]
    assert "[0.211, 0.287]" in waited.stdout


def test_polling_shows_the_replicates_too(monkeypatch):
    from cli.client import EventsUnavailable

    def polled(done, stage=None, analysis="bootstrap", status="fitting"):
        return {"id": "j", "status": status, "spec": {"source": None},
                "progress": {"draws_fetched": 12, "draws_total": 12, "replicates": {
                    "analysis": analysis, "stage": stage, "done": done, "total": 40}}}

    answers = iter([polled(0, 1, "components_test"), polled(0, 1, "components_test"),
                    polled(40, 1, "components_test"), polled(10), polled(40),
                    {**analysed_job(), **polled(40, status="succeeded")}])
    monkeypatch.setattr(Client, "job", lambda self, job_id: next(answers))

    def no_stream(self, job_id, timeout):
        raise EventsUnavailable("no event stream at http://127.0.0.1:9 (HTTP 404)")
        yield

    monkeypatch.setattr(Client, "follow", no_stream)
    monkeypatch.setattr("cli.main.time.sleep", lambda seconds: None)
    waited = run("wait", "j")
    assert waited.exit_code == 0, waited.output
    assert waited.stderr.splitlines()[1:] == [
        "fitting...", "test of 1 vs 2 coins: replicates", "bootstrap: replicates"]


def test_intervals_when_every_replicate_failed():
    from cli.main import format_result

    job = analysed_job()
    job["result"]["em"]["bootstrap"] = {**BOOTSTRAP, "thetas": [], "weights": [],
                                        "failed": 200}
    em_rows = [line.split() for line in format_result(job).splitlines()
               if line.startswith("EM ")]
    assert [row[3] for row in em_rows] == ["n/a", "n/a"]
    assert [row[5] for row in em_rows] == ["n/a", "n/a"]


@pytest.mark.integration
def test_a_bootstrap_job_on_the_stack(stack, api, drawsource, monkeypatch):
    # Its replicates' progress comes from the job's event stream, which replays every event
    # from the start; a slow source keeps the job unfinished when the CLI first looks.
    monkeypatch.setenv("EMCOINS_EVENTS_URL", stack.events_url)
    slow = drawsource(latency_ms=500)
    runner = CliRunner()
    waited = runner.invoke(cli, ["submit", "--source", slow, "--draws", "30", "--restarts", "3",
                                 "--seed", "11", "--bootstrap", "20", "--test-components", "3",
                                 "--test-replicates", "19", "--wait"])
    assert waited.exit_code == 0, waited.output
    job_id = waited.stdout.split()[1].rstrip(":")
    job = _job(api, job_id)
    result = job["result"]
    assert job["spec"]["bootstrap"] == {"replicates": 20, "kind": "nonparametric", "level": 0.95}
    assert job["spec"]["test_components"] == {"max_components": 3, "replicates": 19}
    boot, test = result["em"]["bootstrap"], result["components_test"]
    assert boot["replicates"] == 20 and len(boot["thetas"]) == result["n_components"]

    lines = waited.stdout.splitlines()
    em_rows = [line.split() for line in lines if line.startswith("EM ")]
    for row, theta, (lo, hi), weight, (wlo, whi) in zip(
            em_rows, result["em"]["thetas"], boot["thetas"], result["em"]["weights"],
            boot["weights"], strict=True):
        assert row[2:8] == [f"{theta:.3f}", f"[{lo:.3f},", f"{hi:.3f}]", f"{weight:.3f}",
                            f"[{wlo:.3f},", f"{whi:.3f}]"]
    assert "intervals: 95% percentile, from 20 nonparametric bootstrap replicates" in lines
    assert f"  {boot['failed']} failed to fit; {boot['ambiguous']} ambiguous" in waited.stdout
    tests = [line.split() for line in lines if " vs " in line]
    assert [row[:5] for row in tests] == [
        [str(t["k"]), "vs", str(t["k"] + 1), f"{t['statistic']:.2f}", f"{t['p_value']:.3f}"]
        for t in test["tests"]]
    assert f"selected: {test['selected']} coins" in waited.stdout
    # A bar per stage of the test, then the bootstrap's, after the draws' bar.
    assert waited.stderr.splitlines()[-len(test["tests"]) - 1:] == [
        *(f"test of {t['k']} vs {t['k'] + 1} coins: replicates" for t in test["tests"]),
        "bootstrap: replicates"]

    replicates = job["progress"]["replicates"]
    status = runner.invoke(cli, ["status", job_id])
    assert status.stdout.split() == [job_id, "succeeded", "30/30", "draws", "bootstrap:",
                                     f"{replicates['done']}/{replicates['total']}",
                                     "replicates"]
    assert runner.invoke(cli, ["result", job_id]).stdout == waited.stdout
