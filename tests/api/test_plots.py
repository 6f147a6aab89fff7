"""GET /jobs/<id>/plot.png|svg: drawn once per job from its stored counts and result."""

import io

import pytest
from PIL import Image

from shared import keys, plotting
from shared.contract import JobError
from shared.store import JobStore
from tests.factories import SPEC, plotted_result
from tests.shared.test_plotting import COUNTS

RESULT = plotted_result()


@pytest.fixture
def jobs(redis_client) -> JobStore:
    return JobStore(redis_client, ttl_seconds=600)


def _succeeded(jobs: JobStore, job_id: str = "done") -> str:
    jobs.create(job_id, spec=SPEC, draws_total=12, counts=COUNTS)
    jobs.start_fitting(job_id, COUNTS)
    jobs.succeed(job_id, RESULT)
    return job_id


def test_png_is_drawn_once_and_cached_with_the_jobs_ttl(client, jobs, redis_client, monkeypatch):
    job_id = _succeeded(jobs)
    calls = []
    render = plotting.render
    monkeypatch.setattr(plotting, "render", lambda *a: calls.append(a) or render(*a))
    first = client.get(f"/jobs/{job_id}/plot.png")
    second = client.get(f"/jobs/{job_id}/plot.png")
    assert first.status_code == 200 and first.mimetype == "image/png"
    assert second.data == first.data
    assert len(calls) == 1
    assert calls[0][0] == COUNTS and calls[0][1] == RESULT.to_json()
    image = Image.open(io.BytesIO(first.data))
    assert image.format == "PNG" and image.size == (1050, 450)
    ttl = redis_client.ttl(keys.job_plot(job_id, "png"))
    assert 0 < ttl <= redis_client.ttl(keys.job(job_id)) <= 600


def test_svg(client, jobs):
    job_id = _succeeded(jobs)
    response = client.get(f"/jobs/{job_id}/plot.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert b"<svg" in response.data[:1000]


def test_unknown_job_is_404_in_the_error_envelope(client):
    response = client.get("/jobs/nope/plot.png")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("fail", [False, True])
def test_unfinished_or_failed_job_is_409(client, jobs, fail):
    jobs.create("busy", spec=SPEC, draws_total=5)
    if fail:
        jobs.fail("busy", JobError(code="source_unavailable", message="gone"))
    response = client.get("/jobs/busy/plot.png")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"
    assert response.json["error"]["details"] == {"status": "failed" if fail else "queued"}


def test_plot_routes_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    assert "image/png" in paths["/jobs/{job_id}/plot.png"]["get"]["responses"]["200"]["content"]
