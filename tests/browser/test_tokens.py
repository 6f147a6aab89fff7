"""The page with bearer tokens on: the stream, the plot and the history carry the header."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_page import api_job, assert_estimates_shown, requested, wait_for_result

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_token_reaches_the_stream_and_is_remembered_only_when_asked(secured_stack, browser):
    stack = secured_stack
    token = stack.api_token
    browser.get(f"{stack.api_url}/")
    note = browser.find_element(By.ID, "history-note")
    WebDriverWait(browser, 10).until(lambda _: "token" in note.text)

    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "remember-token").click()
    draws = browser.find_element(By.ID, "source-draws")
    draws.clear()
    draws.send_keys("30")
    browser.find_element(By.ID, "submit").click()
    job_id = wait_for_result(browser)
    # The stream was read with fetch (an EventSource could not have sent the token).
    assert requested(browser, f"{stack.events_url}/jobs/{job_id}/events")
    events = requests.get(f"{stack.events_url}/jobs/{job_id}/events", timeout=10)
    assert events.status_code == 401
    assert_estimates_shown(browser, api_job(stack, job_id, token)["result"])
    # The plot came through fetch with the header too.
    plot = browser.find_element(By.ID, "plot")
    WebDriverWait(browser, 30).until(lambda _: browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", plot))
    assert plot.get_attribute("src").startswith("blob:")
    WebDriverWait(browser, 10).until(lambda _: browser.find_elements(
        By.CSS_SELECTOR, f"#history-table tr[data-id='{job_id}']"))

    # Ticked: the tab remembers the token, so a reload of the job's address shows the job.
    browser.refresh()
    wait_for_result(browser, job_id)
    assert browser.find_element(By.ID, "token").get_attribute("value") == token

    # Unticked: forgotten; a reload then asks for the token again.
    browser.find_element(By.ID, "remember-token").click()
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.refresh()
    error = WebDriverWait(browser, 20).until(
        ec.visibility_of_element_located((By.ID, "job-error")))
    assert error.text.startswith("Send a valid token")
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""
