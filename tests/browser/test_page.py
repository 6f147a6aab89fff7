"""The job page in headless Chromium on the real stack: submit, follow, read the result,
reload a job's address, open jobs from the history."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Geissler's Saxon families of 12 children: how many had 0, 1, ..., 12 boys (6,115 families;
# A. Geissler 1889, as tabulated in Lindsey, "Applying Generalized Linear Models", 1997).
GEISSLER = [3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7]
GEISSLER_TEXT = "\n".join(f"{boys},12,{families}" for boys, families in enumerate(GEISSLER))


def close(shown: str, value: float | None, digits: int) -> bool:
    """Whether a cell shows ``value`` rounded to ``digits`` places ("n/a" for none)."""
    if value is None:
        return shown == "n/a"
    return abs(float(shown) - value) <= 0.5 * 10**-digits + 1e-9 * abs(value)


def texts(element, css: str) -> list[list[str]]:
    """The cells' texts of each row matching ``css`` under ``element``."""
    return [[td.text for td in row.find_elements(By.CSS_SELECTOR, "td")]
            for row in element.find_elements(By.CSS_SELECTOR, css)]


def api_job(stack, job_id: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(f"{stack.api_url}/jobs/{job_id}", headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_result(browser, job_id: str | None = None, timeout: float = 60) -> str:
    """Wait until the page shows a succeeded job's result; its id."""
    wait = WebDriverWait(browser, timeout)
    if job_id is not None:
        wait.until(ec.text_to_be_present_in_element((By.ID, "job-id"), job_id))
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-status"), "succeeded"))
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    return browser.find_element(By.ID, "job-id").text


def requested(browser, prefix: str) -> list[str]:
    """URLs the page fetched that start with ``prefix`` (the Resource Timing entries)."""
    return browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((name) => name.startsWith(arguments[0]))", prefix)


def assert_estimates_shown(browser, result: dict) -> None:
    """The estimates table shows the API's numbers, rounded to three places."""
    shown = {
        (row.get_attribute("data-method"), row.get_attribute("data-coin")): [
            row.find_element(By.CLASS_NAME, name).text for name in ("estimate", "weight", "spread")
        ]
        for row in browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")
    }
    expected = {}
    if result["em"]:
        em = result["em"]
        for i, theta in enumerate(em["thetas"]):
            expected[("EM", str(i + 1))] = [theta, em["weights"][i], em["standard_errors"][i]]
    if result["gmm"]:
        gmm = result["gmm"]
        for i, mean in enumerate(gmm["means"]):
            expected[("GMM", str(i + 1))] = [mean, gmm["weights"][i], gmm["stds"][i]]
    assert shown.keys() == expected.keys()
    for key, values in expected.items():
        assert all(close(s, v, 3) for s, v in zip(shown[key], values, strict=True)), (
            key, shown[key], values)
    assert browser.find_element(By.ID, "result-k").text == str(result["n_components"])


def assert_work_shown(browser, job: dict) -> None:
    """BIC and ICL, convergence, the restart average and summary, warnings and the
    posterior rows are the API's."""
    result = job["result"]
    em = result["em"]

    bic_rows = browser.find_elements(By.CSS_SELECTOR, "#bic-table tbody tr")
    if result["bic"]:
        assert [row.get_attribute("data-k") for row in bic_rows] == list(result["bic"])
        for row in bic_rows:
            k = row.get_attribute("data-k")
            _, bic, icl = (td.text for td in row.find_elements(By.TAG_NAME, "td"))
            assert close(bic, result["bic"][k], 2) and close(icl, result["icl"][k], 2)
        chosen = browser.find_element(By.CSS_SELECTOR, "#bic-table tr.chosen")
        assert chosen.get_attribute("data-k") == str(result["n_components"])
    else:
        assert browser.find_element(By.ID, "bic-table").is_displayed() is False

    converged = {row[0]: row[1:] for row in texts(browser, "#convergence-table tbody tr")}
    yes = {True: "yes", False: "no"}
    assert converged["EM"][:2] == [yes[em["converged"]], str(em["iterations"])]
    assert close(converged["EM"][2], em["log_likelihood"], 2)
    assert converged["GMM"] == [yes[result["gmm"]["converged"]],
                                str(result["gmm"]["iterations"]), "n/a"]

    averaged = em["averaged"]
    assert browser.find_element(By.ID, "averaged-restarts").text == str(averaged["restarts"])
    for i, (coin, theta, weight, std) in enumerate(texts(browser, "#averaged-table tbody tr")):
        assert coin == str(i + 1)
        assert close(theta, averaged["thetas"][i], 3)
        assert close(weight, averaged["weights"][i], 3)
        assert close(std, averaged["std"][i], 3)
    summary = {td.get_attribute("data-field"): td.text
               for td in browser.find_elements(By.CSS_SELECTOR, "#restart-summary td")}
    expected = em["restart_summary"]
    assert summary["restarts"] == str(expected["restarts"])
    assert summary["at_best"] == str(expected["at_best"])
    assert float(summary["tolerance"]) == pytest.approx(expected["tolerance"], rel=0.05)
    for field in ("best", "worst", "spread"):
        assert close(summary[field], expected[field], 2), field

    warnings = browser.find_elements(By.CSS_SELECTOR, "#warnings li")
    assert [li.get_attribute("data-code") for li in warnings] == [
        w["code"] for w in result["warnings"]]
    for li, warning in zip(warnings, result["warnings"], strict=True):
        assert li.text == f"{warning['code']}: {warning['message']}"

    posteriors = em["posteriors"]
    rows = texts(browser, "#posteriors-table tbody tr")
    assert len(rows) == min(20, len(posteriors["pairs"]))
    for row, pair, probabilities in zip(rows, posteriors["pairs"], posteriors["probabilities"],
                                        strict=False):
        assert row[:3] == [str(v) for v in pair]
        assert all(close(s, p, 3) for s, p in zip(row[3:], probabilities, strict=True))
    heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#posteriors-table th")]
    assert heads == ["Heads", "Flips", "Draws"] + [
        f"P(coin {k + 1})" for k in range(len(em["thetas"]))]


def download(browser, link_id: str, folder: Path, name: str) -> bytes:
    """Click a download link of the page and return the file it saved (never empty here).

    Chromium writes ``<name>.crdownload`` and moves it to ``<name>`` at the end, but
    ``<name>`` can exist, empty, just before: a `make test` run read it so, and watching
    the folder every 0.1 ms showed an empty ``<name>`` beside its ``.crdownload`` once in
    nine downloads.
    """
    target = folder / name
    browser.find_element(By.ID, link_id).click()
    deadline = time.monotonic() + 20
    while not _downloaded(folder, target) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _downloaded(folder, target), sorted(p.name for p in folder.iterdir())
    return target.read_bytes()


def _downloaded(folder: Path, target: Path) -> bool:
    """Whether ``target`` is a finished download: renamed into place, so not empty, and no
    download in ``folder`` still running."""
    if not target.exists() or target.stat().st_size == 0:
        return False
    return not any(p.name.endswith(".crdownload") for p in folder.iterdir())


def test_submit_watch_and_read_the_result(stack, browser):
    browser.get(f"{stack.api_url}/")
    url = browser.find_element(By.ID, "source-url")
    url.clear()
    url.send_keys(f"{stack.drawsource_url}/draw")
    draws = browser.find_element(By.ID, "source-draws")
    draws.clear()
    draws.send_keys("40")
    Select(browser.find_element(By.ID, "components")).select_by_value("2")
    browser.find_element(By.ID, "seed").send_keys("11")
    browser.find_element(By.ID, "submit").click()

    job_id = wait_for_result(browser)
    assert browser.current_url == f"{stack.api_url}/jobs/{job_id}"
    assert browser.find_element(By.ID, "job-progress-text").text == "40 / 40 draws"
    assert browser.find_element(By.ID, "job-progress").get_attribute("value") == "40"
    # It followed the job's event stream, from the events service's origin.
    assert requested(browser, f"{stack.events_url}/jobs/{job_id}/events")

    job = api_job(stack, job_id)
    assert_estimates_shown(browser, job["result"])
    assert_work_shown(browser, job)

    # The plot image loaded, at the size the API serves it.
    plot = browser.find_element(By.ID, "plot")
    WebDriverWait(browser, 30).until(lambda _: browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", plot))
    assert plot.get_attribute("src").endswith(f"/jobs/{job_id}/plot.png")
    assert browser.execute_script("return arguments[0].naturalWidth", plot) == 1050
    assert browser.find_element(By.ID, "form-error").is_displayed() is False


def test_counts_history_and_a_jobs_address(stack, browser, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})

    # A histogram with a multiplicity column, K chosen by BIC among 1 to 3.
    browser.get(f"{stack.api_url}/")
    browser.find_element(By.CSS_SELECTOR, "input[name=data][value=counts]").click()
    browser.find_element(By.ID, "counts").send_keys(GEISSLER_TEXT)
    Select(browser.find_element(By.ID, "components")).select_by_value("auto")
    most = browser.find_element(By.ID, "max-components")
    most.clear()
    most.send_keys("3")
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "submit").click()
    first = wait_for_result(browser)
    assert browser.current_url == f"{stack.api_url}/jobs/{first}"

    job = api_job(stack, first)
    assert job["spec"]["n_components"] == "auto" and job["spec"]["max_components"] == 3
    assert job["progress"]["draws_total"] == sum(GEISSLER)
    assert list(job["result"]["bic"]) == ["1", "2", "3"]
    assert_estimates_shown(browser, job["result"])
    assert_work_shown(browser, job)

    # The JSON download is the job as the API gives it; the CSV has every posterior row.
    saved = json.loads(download(browser, "job-json", downloads, f"{first}.json"))
    assert saved == job
    table = list(csv.reader(io.StringIO(
        download(browser, "posteriors-csv", downloads, f"{first}-posteriors.csv").decode())))
    assert table[0] == ["heads", "flips", "count", "p_1", "p_2"]
    assert [[int(v) for v in row[:3]] for row in table[1:]] == job["result"]["em"]["posteriors"][
        "pairs"]

    # The same histogram uploaded as a CSV file with a header line, one coin: overdispersed.
    upload = tmp_path / "geissler.csv"
    upload.write_text("heads,flips,count\n" + GEISSLER_TEXT + "\n")
    browser.find_element(By.ID, "counts-file").send_keys(str(upload))
    WebDriverWait(browser, 10).until(
        lambda _: browser.find_element(By.ID, "counts").get_attribute("value").startswith("heads"))
    Select(browser.find_element(By.ID, "components")).select_by_value("1")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 30).until(lambda _: browser.find_element(By.ID, "job-id").text != first)
    second = wait_for_result(browser)
    job2 = api_job(stack, second)
    assert [w["code"] for w in job2["result"]["warnings"]] == ["overdispersed"]
    assert_estimates_shown(browser, job2["result"])
    assert_work_shown(browser, job2)
    assert browser.find_element(By.ID, "warnings").is_displayed()

    # Reloading the first job's address shows that job again.
    browser.get(f"{stack.api_url}/jobs/{first}")
    wait_for_result(browser, first)
    assert_estimates_shown(browser, job["result"])
    assert_work_shown(browser, job)

    # The history lists the caller's jobs newest first, as GET /jobs does.
    listed = requests.get(f"{stack.api_url}/jobs", params={"page_size": 20}, timeout=10).json()
    expected = [summary["id"] for summary in listed["jobs"]]
    assert expected.index(second) < expected.index(first)
    WebDriverWait(browser, 10).until(
        lambda _: len(browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")) > 1)
    rows = browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    assert [row.get_attribute("data-id") for row in rows] == expected
    current = browser.find_element(By.CSS_SELECTOR, "#history-table tr[aria-current=page]")
    assert current.get_attribute("data-id") == first
    assert current.find_element(By.CLASS_NAME, "status").text == "succeeded"

    # Clicking a job of the history opens it and puts its address in the location bar...
    link = browser.find_element(By.CSS_SELECTOR, f"#history-table tr[data-id='{second}'] a")
    link.click()
    wait_for_result(browser, second)
    assert browser.current_url == f"{stack.api_url}/jobs/{second}"
    assert_estimates_shown(browser, job2["result"])
    assert browser.switch_to.active_element.get_attribute("id") == "job-heading"
    # ...and Back goes to the job before.
    browser.back()
    wait_for_result(browser, first)
    assert browser.current_url == f"{stack.api_url}/jobs/{first}"


def test_without_the_event_stream_the_page_polls(stack, browser, drawsource):
    # A slow source (1.5 s a draw, fetched at once), so the job is still fetching when the
    # page first looks, however busy the machine: then it has to poll at least once more.
    slow = drawsource(latency_ms=1500)
    browser.get(f"{stack.api_url}/")
    # Nothing listens on port 9 of this host: the stream cannot be opened.
    browser.execute_script("document.body.dataset.eventsUrl = 'http://127.0.0.1:9'")
    url = browser.find_element(By.ID, "source-url")
    url.clear()
    url.send_keys(slow)
    draws = browser.find_element(By.ID, "source-draws")
    draws.clear()
    draws.send_keys("30")
    browser.find_element(By.ID, "submit").click()
    job_id = wait_for_result(browser)
    assert browser.find_element(By.ID, "job-progress-text").text == "30 / 30 draws"
    assert not requested(browser, f"{stack.events_url}/")
    # The first look and at least one poll.
    job_url = f"{stack.api_url}/jobs/{job_id}"
    assert requested(browser, job_url).count(job_url) >= 2


def test_an_unknown_job_address_says_so(stack, browser):
    browser.get(f"{stack.api_url}/jobs/00000000-0000-4000-8000-000000000000")
    error = WebDriverWait(browser, 20).until(
        ec.visibility_of_element_located((By.ID, "job-error")))
    assert error.text == "No job 00000000-0000-4000-8000-000000000000."
    assert browser.find_element(By.ID, "job-status").text == "not found"


def test_an_invalid_job_shows_the_apis_message(stack, browser):
    browser.get(f"{stack.api_url}/")
    browser.find_element(By.CSS_SELECTOR, "input[name=data][value=draws]").click()
    browser.find_element(By.ID, "draws").send_keys("HHTT\nHHXT")
    browser.find_element(By.ID, "submit").click()
    error = WebDriverWait(browser, 20).until(
        ec.visibility_of_element_located((By.ID, "form-error"))
    )
    assert error.text.startswith("Some fields are invalid; see details. (draws.1:")


# The analyses of issue 11 in their JSON form: EM's bootstrap intervals and the test for the
# number of coins.
BOOTSTRAP = {"replicates": 200, "kind": "parametric", "level": 0.9,
             "thetas": [[0.4712, 0.4893], [0.6011, 0.6302]],
             "weights": [[0.6504, 0.7796], [0.2204, 0.3496]], "failed": 2, "ambiguous": 5}
COMPONENTS_TEST = {"replicates": 99, "tests": [{"k": 1, "statistic": 66.123, "p_value": 0.01},
                                               {"k": 2, "statistic": 0.534, "p_value": 0.62}],
                   "selected": 2}


def finished_counts_job(stack, **options) -> dict:
    """Geissler's families fitted by the stack with ``options``; the finished job."""
    counts = [[boys, 12, families] for boys, families in enumerate(GEISSLER)]
    posted = requests.post(f"{stack.api_url}/jobs", json={"counts": counts, **options},
                           timeout=10)
    posted.raise_for_status()
    job_id = posted.json()["id"]
    deadline = time.monotonic() + 60
    while (job := api_job(stack, job_id))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    return job


def test_the_page_shows_intervals_the_test_and_replicates_done(stack, browser):
    job = finished_counts_job(stack, n_components="auto", max_components=3, seed=5)
    browser.get(f"{stack.api_url}/jobs/{job['id']}")
    wait_for_result(browser, job["id"])
    # Without the analyses: no interval columns, no test, no replicates.
    heads = browser.find_elements(By.CSS_SELECTOR, "#result-table th.interval-head")
    assert [th.is_displayed() for th in heads] == [False, False]
    for hidden in ("bootstrap-note", "components-test-area", "replicates-line"):
        assert browser.find_element(By.ID, hidden).is_displayed() is False, hidden

    # A count of replicates in a progress event, then the finished job with both analyses,
    # as the page's own handlers receive them from the stream.
    progress = {"draws_fetched": sum(GEISSLER), "draws_total": sum(GEISSLER), "replicates": {
        "analysis": "components_test", "stage": 2, "done": 7, "total": 99}}
    browser.execute_script("showProgress(arguments[0])", progress)
    assert browser.find_element(By.ID, "replicates-line").text == (
        "Test of 2 against 3 coins: replicates 7 / 99")
    progress["replicates"] = {"analysis": "bootstrap", "stage": None, "done": 120, "total": 2000}
    browser.execute_script("showProgress(arguments[0])", progress)
    assert browser.find_element(By.ID, "replicates-line").text == (
        "Bootstrap replicates 120 / 2000")
    bar = browser.find_element(By.ID, "replicates-progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("120", "2000")
    assert browser.find_element(By.ID, "job-progress-text").text == f"{sum(GEISSLER)} / " \
        f"{sum(GEISSLER)} draws"
    analysed = json.loads(json.dumps(job))
    analysed["spec"]["bootstrap"] = {"replicates": 200, "kind": "parametric", "level": 0.9}
    analysed["spec"]["test_components"] = {"max_components": 3, "replicates": 99}
    analysed["result"]["em"]["bootstrap"] = BOOTSTRAP
    analysed["result"]["components_test"] = COMPONENTS_TEST
    browser.execute_script("finish(arguments[0])", analysed)

    assert [th.text for th in heads] == ["90% interval", "90% interval"]
    rows = {(row.get_attribute("data-method"), row.get_attribute("data-coin")): row
            for row in browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")}
    for i in range(2):
        row = rows[("EM", str(i + 1))]
        assert row.find_element(By.CLASS_NAME, "estimate-interval").text == (
            "[{:.3f}, {:.3f}]".format(*BOOTSTRAP["thetas"][i]))
        assert row.find_element(By.CLASS_NAME, "weight-interval").text == (
            "[{:.3f}, {:.3f}]".format(*BOOTSTRAP["weights"][i]))
        # The columns stay aligned: GMM rows have the cells, empty.
        gmm = rows[("GMM", str(i + 1))]
        cells = [td.text for td in gmm.find_elements(By.TAG_NAME, "td")]
        assert len(cells) == 7 and cells[3] == cells[5] == ""
    assert_estimates_shown(browser, analysed["result"])
    assert browser.find_element(By.ID, "bootstrap-note").text.startswith(
        "Intervals: 90% percentile, from 200 parametric bootstrap replicates; 2 failed to fit, "
        "5 matched to the coins ambiguously")

    assert browser.find_element(By.ID, "components-test-replicates").text == "99"
    assert texts(browser, "#components-test-table tbody tr") == [
        ["1 vs 2", "66.12", "0.010", ""], ["2 vs 3", "0.53", "0.620", "yes"]]
    chosen = browser.find_element(By.CSS_SELECTOR, "#components-test-table tr.chosen")
    assert chosen.get_attribute("data-k") == "2"
    assert browser.find_element(By.ID, "components-test-note").text == (
        "Selected: 2 coins, the first test not significant at 0.05 (the K fitted).")
    assert browser.find_element(By.ID, "bic-chooser").text == "the test below"
    spec = dict(zip((dt.text for dt in browser.find_elements(By.CSS_SELECTOR, "#job-spec dt")),
                    (dd.text for dd in browser.find_elements(By.CSS_SELECTOR, "#job-spec dd")),
                    strict=True))
    assert spec["Coins"] == "auto (the test, up to 3)"
    assert spec["Bootstrap"] == "200 parametric replicates, 90% intervals"
    assert spec["Test for the number of coins"] == "up to 3 coins, 99 replicates per test"

    # K given, not chosen: the test only reports. Every replicate failed: no intervals.
    analysed["spec"]["n_components"] = 2
    analysed["result"]["em"]["bootstrap"] = {**BOOTSTRAP, "thetas": [], "weights": [],
                                             "failed": 200}
    browser.execute_script("finish(arguments[0])", analysed)
    em_row = browser.find_element(By.CSS_SELECTOR, "#result-table tr[data-method=EM]")
    assert em_row.find_element(By.CLASS_NAME, "estimate-interval").text == "n/a"
    assert em_row.find_element(By.CLASS_NAME, "weight-interval").text == "n/a"
    assert browser.find_element(By.ID, "components-test-note").text.endswith(
        "(reported only; the fit keeps the K asked for).")
    assert browser.find_element(By.ID, "bic-chooser").text == "BIC"


def test_the_form_asks_for_the_analyses(stack, browser):
    browser.get(f"{stack.api_url}/")
    request = browser.execute_script("return jobRequest()")
    assert "bootstrap" not in request and "test_components" not in request
    browser.find_element(By.ID, "bootstrap-replicates").send_keys("300")
    Select(browser.find_element(By.ID, "bootstrap-kind")).select_by_value("parametric")
    level = browser.find_element(By.ID, "bootstrap-level")
    level.clear()
    level.send_keys("0.9")
    browser.find_element(By.ID, "test-components").send_keys("4")
    replicates = browser.find_element(By.ID, "test-replicates")
    replicates.clear()
    replicates.send_keys("19")
    request = browser.execute_script("return jobRequest()")
    assert request["bootstrap"] == {"replicates": 300, "kind": "parametric", "level": 0.9}
    assert request["test_components"] == {"max_components": 4, "replicates": 19}


def test_a_bootstrap_job_from_the_form(stack, browser, drawsource):
    # A slow source keeps the job fetching when the page first looks, so the page follows
    # its event stream, which replays every progress event from the start.
    slow = drawsource(latency_ms=500)
    browser.get(f"{stack.api_url}/")
    url = browser.find_element(By.ID, "source-url")
    url.clear()
    url.send_keys(slow)
    browser.find_element(By.ID, "seed").send_keys("11")
    browser.find_element(By.ID, "bootstrap-replicates").send_keys("20")
    browser.find_element(By.ID, "test-components").send_keys("3")
    replicates = browser.find_element(By.ID, "test-replicates")
    replicates.clear()
    replicates.send_keys("19")
    # Every text the replicates' label and count take, in order.
    browser.execute_script("""
      window.seenReplicates = [];
      const watch = (id) => new MutationObserver((records) => {
        for (const record of records) {
          for (const node of record.addedNodes) window.seenReplicates.push([id, node.data]);
        }
      }).observe(document.getElementById(id), { childList: true });
      watch("replicates-analysis");
      watch("replicates-progress-text");
    """)
    browser.find_element(By.ID, "submit").click()
    job_id = wait_for_result(browser)
    job = api_job(stack, job_id)
    result = job["result"]
    assert job["spec"]["bootstrap"] == {"replicates": 20, "kind": "nonparametric", "level": 0.95}
    assert job["spec"]["test_components"] == {"max_components": 3, "replicates": 19}

    seen = browser.execute_script("return window.seenReplicates")
    labels = [text for id_, text in seen if id_ == "replicates-analysis"]
    stages = [f"Test of {t['k']} against {t['k'] + 1} coins:"
              for t in result["components_test"]["tests"]]
    assert [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label] == [
        *stages, "Bootstrap"]
    # Each stage counts up from 0 to its total (chunk by chunk), then the next starts.
    counts = [[int(n) for n in text.split(" / ")]
              for id_, text in seen if id_ == "replicates-progress-text"]
    runs = []
    for done, total in counts:
        if done == 0:
            runs.append([])
        runs[-1].append((done, total))
    assert [(run[0], run[-1]) for run in runs] == [
        *(((0, 19), (19, 19)) for _ in stages), ((0, 20), (20, 20))], counts
    assert all(run == sorted(run) for run in runs), counts
    assert browser.find_element(By.ID, "replicates-line").text == "Bootstrap replicates 20 / 20"

    boot = result["em"]["bootstrap"]
    for i in range(result["n_components"]):
        row = browser.find_element(By.CSS_SELECTOR,
                                   f"#result-table tr[data-method=EM][data-coin='{i + 1}']")
        assert row.find_element(By.CLASS_NAME, "estimate-interval").text == (
            "[{:.3f}, {:.3f}]".format(*boot["thetas"][i]))
        assert row.find_element(By.CLASS_NAME, "weight-interval").text == (
            "[{:.3f}, {:.3f}]".format(*boot["weights"][i]))
    assert_estimates_shown(browser, result)
    test = result["components_test"]
    assert texts(browser, "#components-test-table tbody tr") == [
        [f"{t['k']} vs {t['k'] + 1}", f"{t['statistic']:.2f}", f"{t['p_value']:.3f}",
         "yes" if t["k"] == test["selected"] else ""] for t in test["tests"]]
    # The plot, with its error bars, loaded.
    plot = browser.find_element(By.ID, "plot")
    WebDriverWait(browser, 30).until(lambda _: browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", plot))
