"""The job page in headless Chromium: submit on the real stack, watch it, read the result."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = [pytest.mark.browser, pytest.mark.integration]


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

    wait = WebDriverWait(browser, 60)
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-status"), "succeeded"))
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    job_id = browser.find_element(By.ID, "job-id").text
    assert browser.find_element(By.ID, "job-progress-text").text == "40 / 40 draws"
    assert browser.find_element(By.ID, "job-progress").get_attribute("value") == "40"

    # The numbers shown are the API's, rounded to three places.
    job = requests.get(f"{stack.api_url}/jobs/{job_id}", timeout=10).json()
    result = job["result"]
    shown = {
        (row.get_attribute("data-method"), row.get_attribute("data-coin")): [
            row.find_element(By.CLASS_NAME, name).text for name in ("estimate", "weight", "spread")
        ]
        for row in browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")
    }
    expected = {}
    for i, theta in enumerate(result["em"]["thetas"]):
        se = result["em"]["standard_errors"][i]
        expected[("EM", str(i + 1))] = [
            f"{theta:.3f}", f"{result['em']['weights'][i]:.3f}",
            "n/a" if se is None else f"{se:.3f}",
        ]
    for i, mean in enumerate(result["gmm"]["means"]):
        expected[("GMM", str(i + 1))] = [
            f"{mean:.3f}", f"{result['gmm']['weights'][i]:.3f}",
            f"{result['gmm']['stds'][i]:.3f}",
        ]
    assert shown == expected
    assert browser.find_element(By.ID, "result-k").text == "2"

    # The plot image loaded, at the size the API serves it.
    plot = browser.find_element(By.ID, "plot")
    wait.until(lambda _: browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", plot))
    assert plot.get_attribute("src").endswith(f"/jobs/{job_id}/plot.png")
    assert browser.execute_script("return arguments[0].naturalWidth", plot) == 1050
    assert browser.find_element(By.ID, "form-error").is_displayed() is False


def test_an_invalid_job_shows_the_apis_message(stack, browser):
    browser.get(f"{stack.api_url}/")
    browser.find_element(By.CSS_SELECTOR, "input[name=data][value=draws]").click()
    browser.find_element(By.ID, "draws").send_keys("HHTT\nHHXT")
    browser.find_element(By.ID, "submit").click()
    error = WebDriverWait(browser, 20).until(
        ec.visibility_of_element_located((By.ID, "form-error"))
    )
    assert error.text.startswith("Some fields are invalid; see details. (draws.1:")
