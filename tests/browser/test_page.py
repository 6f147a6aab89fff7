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
    """Click a download link of the page and return the file it saved."""
    target = folder / name
    browser.find_element(By.ID, link_id).click()
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.exists(), sorted(p.name for p in folder.iterdir())
    return target.read_bytes()


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
