"""GET / and GET /jobs/<id> as HTML: the job page and its assets (its behaviour is tested
in tests/browser)."""

from html.parser import HTMLParser

import pytest

from api import create_app

# What Chromium sends when it navigates to an address.
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
JOB = {"counts": [[3, 10], [8, 10]], "seed": 1}
ALICE = "alice-5e1c0d9b8a7f6e5d4c3b"
BOB = "bob-9a8b7c6d5e4f3a2b1c0d"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.assets: list[str] = []
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "body":
            self.body = attrs
        if tag in ("script", "link") and (attrs.get("src") or attrs.get("href")):
            self.assets.append(attrs.get("src") or attrs["href"])


def parse(response) -> _Page:
    page = _Page()
    page.feed(response.get_data(as_text=True))
    return page


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_page_has_the_form_result_and_history_areas(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = parse(response)
    assert {"job-form", "source-url", "source-draws", "draws", "counts", "counts-file",
            "components", "max-components", "restarts", "weights", "seed", "callback",
            "token", "remember-token", "job-progress", "result-table", "bic-table",
            "convergence-table", "averaged-table", "restart-summary", "posteriors-table",
            "posteriors-csv", "trajectory-table", "warnings", "method-errors", "job-json",
            "plot", "history-table"} <= page.ids
    assert sorted(page.assets) == ["/static/app.css", "/static/app.js",
                                   "/static/favicon.png", "/static/favicon.svg"]
    for asset in page.assets:
        with client.get(asset) as served:  # files are streamed: close them
            assert served.status_code == 200 and served.data
    # The stream's origin comes from the settings; empty means the API's own.
    assert page.body["data-events-url"] == ""


def test_the_page_allows_only_its_own_scripts_and_the_events_origin(redis_client):
    client = create_app(
        {"TESTING": True, "events_url": "http://events.example:8002/"}
    ).test_client()
    response = client.get("/")
    assert parse(response).body["data-events-url"] == "http://events.example:8002"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self' http://events.example:8002" in policy
    assert "unsafe-inline" not in policy


def test_components_choices_follow_the_setting(app):
    app.config["SETTINGS"] = app.config["SETTINGS"].__class__(max_components=3)
    html = app.test_client().get("/").get_data(as_text=True)
    assert '<option value="3"' in html and '<option value="4"' not in html
    assert '<option value="auto">' in html
    assert 'max="3" value="3"' in html  # the most coins tried, when "auto"


def test_replicates_inputs_follow_the_setting(app):
    app.config["SETTINGS"] = app.config["SETTINGS"].__class__(max_replicates=500)
    html = app.test_client().get("/").get_data(as_text=True)
    assert html.count('max="500"') == 2  # bootstrap replicates and replicates per test


def test_a_browser_opening_a_job_address_gets_the_page(client):
    job = client.post("/jobs", json=JOB).get_json()
    response = client.get(job["url"], headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "job-form" in parse(response).ids
    assert "Accept" in response.headers["Vary"]
    # HEAD as GET, without a body.
    head = client.head(job["url"], headers={"Accept": "text/html"})
    assert head.status_code == 200 and head.mimetype == "text/html" and head.data == b""


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json, text/html;q=0.9",
     "text/html;q=0.5, application/json"],
)
def test_any_other_client_gets_the_json(client, accept):
    job = client.post("/jobs", json=JOB).get_json()
    headers = {} if accept is None else {"Accept": accept}
    response = client.get(job["url"], headers=headers)
    assert response.status_code == 200 and response.is_json
    assert response.get_json()["id"] == job["id"]
    assert "Accept" in response.headers["Vary"]


def test_only_the_job_address_is_negotiated(client):
    job = client.post("/jobs", json=JOB).get_json()
    html = {"Accept": BROWSER_ACCEPT}
    # The list, a job's draws and an unknown path stay JSON for a browser too.
    assert client.get("/jobs", headers=html).is_json
    assert client.get(f"{job['url']}/draws", headers=html).is_json
    assert client.get("/nowhere", headers=html).status_code == 404
    # Other methods on the job's address are the API's.
    assert client.post(f"{job['url']}/cancel", headers=html).is_json


@pytest.fixture
def secured(redis_client):
    """An API that accepts Alice's and Bob's tokens."""
    return create_app({"TESTING": True, "api_tokens": (ALICE, BOB)}).test_client()


def test_with_tokens_the_page_is_served_without_one(secured):
    job = secured.post("/jobs", json=JOB, headers=bearer(ALICE)).get_json()
    # A navigation carries no token: the page is public, as "/" is; it asks for the job
    # with the token its user gives.
    page = secured.get(job["url"], headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert job["id"] not in page.get_data(as_text=True)
    # The JSON is still the owner's alone: 401 without a token, 404 for another's.
    assert secured.get(job["url"]).status_code == 401
    assert secured.get(job["url"], headers=bearer(ALICE)).get_json()["id"] == job["id"]
    other = secured.get(job["url"], headers=bearer(BOB))
    assert other.status_code == 404 and other.is_json
    assert other.get_json()["error"]["code"] == "not_found"
    explicit = secured.get(job["url"], headers={**bearer(BOB), "Accept": "application/json"})
    assert explicit.status_code == 404 and explicit.is_json
