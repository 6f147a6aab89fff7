"""GET /metrics: figures kept in Redis, whole across the API's and workers' processes."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import Metrics
from tests.integration.helpers import submit, wait_for


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}``."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


SUBMITTED = ("emcoins_jobs_submitted_total", ())
SUCCEEDED = ("emcoins_jobs_finished_total", (("code", "none"), ("status", "succeeded")))
CANCELLED = ("emcoins_jobs_finished_total", (("code", "none"), ("status", "cancelled")))
RESUMED = ("emcoins_jobs_resumed_total", ())


def test_submitting_and_cancelling_in_the_app(client, redis_client):
    before = parse(client.get("/metrics").get_data(as_text=True))
    assert before[SUBMITTED] == 0
    created = client.post("/jobs", json={"counts": [[3, 10], [8, 10]]})
    assert created.status_code == 202
    client.post(f"/jobs/{created.json['id']}/cancel")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    after = parse(response.get_data(as_text=True))
    assert after[SUBMITTED] == 1
    assert after[CANCELLED] == 1
    # No worker runs here: the job's two fits and its finish still wait in the cpu queue.
    assert after[("emcoins_queue_depth", (("queue", "cpu"),))] == redis_client.llen("cpu") >= 1
    assert after[("emcoins_job_duration_seconds_count", ())] == 1


def test_resumed_jobs_are_counted(client, redis_client):
    assert parse(client.get("/metrics").get_data(as_text=True))[RESUMED] == 0
    Metrics(redis_client).job_resumed()
    Metrics(redis_client).job_resumed()
    assert parse(client.get("/metrics").get_data(as_text=True))[RESUMED] == 2


@pytest.mark.integration
def test_counts_on_the_real_stack_grow_by_the_jobs_run(stack):
    def scrape() -> dict:
        response = requests.get(f"{stack.api_url}/metrics", timeout=10)
        assert response.status_code == 200
        return parse(response.text)

    before = scrape()
    bodies = [{"counts": [[3, 10], [8, 10], [2, 10], [9, 10]], "restarts": 2, "seed": i}
              for i in range(3)]
    bodies.append({"source": {"url": f"{stack.drawsource_url}/draw", "draws": 20},
                   "restarts": 2})
    jobs = [submit(stack.api_url, body) for body in bodies]
    finished = [wait_for(stack.api_url, job, timeout=60) for job in jobs]
    assert [job["status"] for job in finished] == ["succeeded"] * 4
    after = scrape()
    n = len(jobs)
    assert after[SUBMITTED] - before.get(SUBMITTED, 0) == n
    assert after[SUCCEEDED] - before.get(SUCCEEDED, 0) == n
    duration = ("emcoins_job_duration_seconds_count", ())
    assert after[duration] - before.get(duration, 0) == n
    # The stack fetches 10 draws per task: the 20-draw job ran two fetch tasks.
    fetches = ("emcoins_fetch_duration_seconds_count", ())
    assert after[fetches] - before.get(fetches, 0) == 2
    assert after[("emcoins_queue_depth", (("queue", "io"),))] == 0
