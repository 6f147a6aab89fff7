"""The job's whole life on the real stack (gunicorn, workers, Redis) through the project's
client: listing, its spec, draws and posteriors, cancel and delete, Idempotency-Key."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from scipy.stats import binom

from cli.client import Client, ClientError

pytestmark = pytest.mark.integration

# Geissler's Saxony families: [boys, 12, families].
GEISSLER = [[boys, 12, n] for boys, n in enumerate(
    [3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7]
)]


@pytest.fixture
def client(stack) -> Client:
    return Client(stack.api_url, timeout=30)


def test_a_weighted_job_lists_shows_its_work_and_is_deleted(client, stack):
    job = client.submit({"counts": GEISSLER, "n_components": 2, "seed": 11})
    done = client.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["progress"]["draws_total"] == 6115
    assert done["spec"]["seed"] == 11 and done["spec"]["n_components"] == 2
    listed = client.jobs(page_size=5)["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    # The posterior table against the binomial pmf with the job's own estimates.
    em = done["result"]["em"]
    table = client.request("GET", f"/jobs/{job['id']}/posteriors").json()
    assert sorted(table["pairs"]) == sorted(GEISSLER) and table["truncated"] is False
    for (heads, flips, _), row in zip(table["pairs"], table["probabilities"], strict=True):
        joint = np.array([w * binom.pmf(heads, flips, t)
                          for t, w in zip(em["thetas"], em["weights"], strict=True)])
        np.testing.assert_allclose(row, joint / joint.sum(), rtol=1e-9)
    assert em["posteriors"]["pairs"] == table["pairs"]  # all 13 rows fit in the result
    draws = client.request("GET", f"/jobs/{job['id']}/draws",
                           headers={"Accept": "text/csv"}).text
    rows = list(csv.reader(io.StringIO(draws)))
    assert rows[0] == ["heads", "flips", "count"]
    assert sorted([int(v) for v in row] for row in rows[1:]) == sorted(GEISSLER)
    with pytest.raises(ClientError, match="409"):
        client.cancel(job["id"])
    client.delete(job["id"])
    with pytest.raises(ClientError, match="404"):
        client.job(job["id"])
    assert job["id"] not in [j["id"] for j in client.jobs(page_size=50)["jobs"]]


def test_concurrent_requests_with_one_idempotency_key_make_one_job(stack):
    body = {"counts": [[1, 10], [9, 10], [2, 10]], "seed": 3}

    def post(_: int) -> requests.Response:
        return requests.post(f"{stack.api_url}/jobs", json=body, timeout=30,
                             headers={"Idempotency-Key": "one-key-many-clients"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(32)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    other = requests.post(f"{stack.api_url}/jobs", json={**body, "seed": 4}, timeout=30,
                          headers={"Idempotency-Key": "one-key-many-clients"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_source_job_answers_409_for_its_draws_until_fetched_then_gives_them(client, drawsource):
    url = drawsource(latency_ms=30)
    job = client.submit({"source": {"url": url, "draws": 60}})
    early = requests.get(f"{client.base_url}/jobs/{job['id']}/draws", timeout=10)
    assert early.status_code == 409
    done = client.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded"
    counts = client.request("GET", f"/jobs/{job['id']}/draws").json()["counts"]
    assert sum(row[2] for row in counts) == 60
    assert done["spec"]["source"] == {"url": url, "draws": 60}
