"""GET /: the job page and its assets (its behaviour is tested in tests/browser)."""

from html.parser import HTMLParser


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag in ("script", "link") and (attrs.get("src") or attrs.get("href")):
            self.assets.append(attrs.get("src") or attrs["href"])


def test_page_has_the_form_and_result_areas(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = _Page()
    page.feed(response.get_data(as_text=True))
    assert {"job-form", "source-url", "source-draws", "draws", "components", "restarts",
            "job-progress", "result-table", "plot"} <= page.ids
    assert sorted(page.assets) == ["/static/app.css", "/static/app.js"]
    for asset in page.assets:
        with client.get(asset) as served:  # files are streamed: close them
            assert served.status_code == 200 and served.data


def test_components_choices_follow_the_setting(app):
    app.config["SETTINGS"] = app.config["SETTINGS"].__class__(max_components=3)
    html = app.test_client().get("/").get_data(as_text=True)
    assert '<option value="3"' in html and '<option value="4"' not in html
    assert '<option value="auto">' in html
