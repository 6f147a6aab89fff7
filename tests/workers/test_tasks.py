"""The tasks in-process against the real Redis: duplicates and redeliveries change nothing."""

from __future__ import annotations

import json

import pytest

from shared import keys
from shared.status import JobStatus
from tests.factories import SPEC, part, spec
from tests.stub_http import draw
from workers import tasks


def queued_ids(redis_client, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in reversed(redis_client.lrange(queue, 0, -1))]


@pytest.fixture
def source_job(redis_client, stub_source):
    """A job of 6 draws in two batches of 3, from a source always answering HHTT."""
    url = stub_source(lambda n, path: draw("HHTT")).url()
    tasks.store().create("job", spec=spec(source=(url, 6)), draws_total=6, batches_total=2)
    return url


def test_a_duplicated_fetch_cannot_start_the_fits_early(redis_client, source_job):
    tasks.fetch_batch.run("job", source_job, 0, 0, 3)
    tasks.fetch_batch.run("job", source_job, 0, 0, 3)  # the same batch, delivered twice
    assert queued_ids(redis_client, "cpu") == []
    assert tasks.store().get("job").draws_fetched == 3
    tasks.fetch_batch.run("job", source_job, 1, 3, 3)
    assert queued_ids(redis_client, "cpu") == ["job.fit.em", "job.fit.gmm"]
    assert tasks.store().get("job").draws_fetched == 6


def test_a_fetch_redelivered_after_its_write_still_starts_the_fits(redis_client, source_job):
    jobs = tasks.store()
    # As if the worker died between recording the last batch and sending the fits.
    jobs.record_batch("job", 0, [(2, 4)] * 3)
    jobs.record_batch("job", 1, [(2, 4)] * 3)
    assert queued_ids(redis_client, "cpu") == []
    tasks.fetch_batch.run("job", source_job, 1, 3, 3)
    assert queued_ids(redis_client, "cpu") == ["job.fit.em", "job.fit.gmm"]


def test_fits_store_the_result_once(redis_client):
    jobs = tasks.store()
    jobs.create("job", spec=SPEC, draws_total=8, counts=[[1, 10, 4], [9, 10, 4]])
    tasks.fit.run("job", ["em"])
    assert jobs.get("job").status is JobStatus.FITTING  # gmm still missing
    tasks.fit.run("job", ["gmm"])
    first = jobs.get("job")
    assert first.status is JobStatus.SUCCEEDED
    assert first.result.em is not None and first.result.gmm is not None
    tasks.fit.run("job", ["em", "gmm"])  # redelivered: nothing is fitted or written again
    again = jobs.get("job")
    assert again.finished_at == first.finished_at and again.result == first.result


def test_a_fit_redelivered_after_its_part_was_saved_stores_the_result(redis_client):
    jobs = tasks.store()
    jobs.create("job", spec=spec(methods=["gmm"]), draws_total=8,
                counts=[[1, 10, 4], [9, 10, 4]])
    jobs.start_fitting("job", [[1, 10, 4], [9, 10, 4]])
    # As if the worker died between saving the part and storing the result.
    saved = part("gmm", means=(0.1, 0.9))
    redis_client.hset(keys.job_parts("job"), "gmm", json.dumps(saved.to_json()))
    tasks.fit.run("job", ["gmm"])
    record = jobs.get("job")
    assert record.status is JobStatus.SUCCEEDED
    assert record.result.gmm == saved.estimate


def test_a_cancelled_job_is_left_alone(redis_client, source_job):
    tasks.store().cancel("job")
    tasks.fetch_batch.run("job", source_job, 0, 0, 3)
    tasks.fit.run("job", ["em"])
    assert redis_client.exists(keys.job_draws("job"), keys.job_parts("job")) == 0
    assert tasks.store().get("job").status is JobStatus.CANCELLED


def test_a_fetch_redelivered_after_one_fit_went_out_sends_the_fits_still_missing(
    redis_client, source_job
):
    jobs = tasks.store()
    # As if Redis stopped between the two fit sends: the draws are complete, the em fit
    # went out and started (the job is fitting), the gmm fit never reached the broker.
    jobs.record_batch("job", 0, [(2, 4)] * 3)
    jobs.record_batch("job", 1, [(2, 4), (1, 4), (3, 4)])
    jobs.start_fitting("job", [[1, 4, 1], [2, 4, 4], [3, 4, 1]])
    tasks.fetch_batch.run("job", source_job, 1, 3, 3)
    assert queued_ids(redis_client, "cpu") == ["job.fit.em", "job.fit.gmm"]
    # Once a part is saved, only the other one is sent again.
    redis_client.delete("cpu")
    tasks.fit.run("job", ["em"])
    tasks.fetch_batch.run("job", source_job, 0, 0, 3)
    assert queued_ids(redis_client, "cpu") == ["job.fit.gmm"]
    tasks.fit.run("job", ["gmm"])
    assert jobs.get("job").status is JobStatus.SUCCEEDED
