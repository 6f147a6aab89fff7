"""Screenshot of the job page after a finished job: ``python docs/screenshot.py -o page.png``.

Drives Debian's headless Chromium (as the browser test does) against a running stack
(``make run``): fills in the form (K chosen by BIC, so that the page shows its BIC and ICL
table), waits for the result, the plot and the history, saves a PNG of the whole page
at the job's address.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait


def main() -> None:
    """Parse the options, drive the page, save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-url", default="http://127.0.0.1:8000")
    parser.add_argument("--source", default="http://127.0.0.1:8001/draw")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--max-components", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("-o", "--output", default="docs/images/page.png")
    args = parser.parse_args()

    profile = tempfile.mkdtemp(prefix="emcoins-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1100,1500", "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"{args.api_url}/")
        url = driver.find_element(By.ID, "source-url")
        url.clear()
        url.send_keys(args.source)
        draws = driver.find_element(By.ID, "source-draws")
        draws.clear()
        draws.send_keys(str(args.draws))
        Select(driver.find_element(By.ID, "components")).select_by_value("auto")
        most = driver.find_element(By.ID, "max-components")
        most.clear()
        most.send_keys(str(args.max_components))
        driver.find_element(By.ID, "seed").send_keys(str(args.seed))
        driver.find_element(By.ID, "submit").click()
        wait = WebDriverWait(driver, 120)
        wait.until(ec.text_to_be_present_in_element((By.ID, "job-status"), "succeeded"))
        plot = driver.find_element(By.ID, "plot")
        wait.until(lambda _: driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", plot))
        # The history lists the new job once the page has refreshed it.
        job_id = driver.find_element(By.ID, "job-id").text
        wait.until(lambda _: driver.find_elements(
            By.CSS_SELECTOR, f"#history-table tr[data-id='{job_id}']"))
        height = driver.execute_script("return document.documentElement.scrollHeight")
        # The whole page in one picture, not just the first screenful.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1100, "height": height, "deviceScaleFactor": 1, "mobile": False})
        driver.save_screenshot(args.output)
        print(f"wrote {args.output}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
