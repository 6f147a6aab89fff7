"""/docs: Swagger UI over /openapi.json, with every asset served by the app itself."""

from html.parser import HTMLParser


class _Assets(HTMLParser):
    """Collects every src and href of the page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_docs_page_and_every_asset_it_references_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'url: "/openapi.json"' in html
    parser = _Assets()
    parser.feed(html)
    assert len(parser.urls) >= 3
    for url in parser.urls:
        assert url.startswith("/"), f"{url} is not served by the app"
        with client.get(url) as response:  # files are streamed: close them
            assert response.status_code == 200, url
            assert len(response.data) > 1000, url
    assert "https://" not in html and "http://" not in html


def test_the_spec_the_page_reads_lists_the_routes(client):
    paths = client.get("/openapi.json").json["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/plot.png", "/metrics"} <= set(paths)


def test_missing_asset_is_404(client):
    with client.get("/docs/assets/nothing.js") as response:
        assert response.status_code == 404
