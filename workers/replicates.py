"""The analyses whose replicates fan out to the workers: bootstrap intervals and the test for
the number of coins, carried from stage to stage through the job store.

The components test runs first, one stage per k (k coins against k + 1); then the fits, with
the K it selected when the job chooses K; then the bootstrap, from the EM fit. A stage is
started once: the step that starts it fits what its replicates need (the test's null and
alternative; the bootstrap's reference is the EM fit), runs and times the first replicates
itself, stores them as chunk 0 with the stage's setup and chunk layout, and sends the other
chunks to the ``replicates`` queue. Each chunk is saved once and counted in the same step;
the save that completes the stage runs the step after it: the test's p-value and next stage
(or the fits), or the bootstrap's intervals and the job's result. Every step can run twice
(a redelivered task finds what is saved and does only what is missing), and a replicate's
random stream comes from its index, so the result does not depend on the chunks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shared.chunks import ChunkLayout, chunk_size
from shared.config import get_settings
from shared.contract import BOOTSTRAP, COMPONENTS_TEST, BootstrapIntervals, JobError, Part
from shared.dispatch import Dispatcher
from shared.estimation.bootstrap import bootstrap_chunk, summarize_bootstrap
from shared.estimation.components_test import (
    check_max_components,
    fit_summary,
    full_fit,
    is_significant,
    lrt_chunk,
    observed_statistic,
    p_value,
)
from shared.status import ErrorCode
from shared.store import JobRecord, JobStore, Saved
from workers.results import TEST_ERROR, running_record, store_result

log = logging.getLogger(__name__)

# The step starting a stage runs replicates for about this long (at least one) to time
# them; they become chunk 0. Capped at a quarter of EMCOINS_REPLICATE_CHUNK_SECONDS.
TIMING_SECONDS = 0.25
# A running chunk asks Redis whether its job is still running at most this often.
CHECK_SECONDS = 0.2

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


class _Recent(OrderedDict):
    """The last few values by key: a worker runs many chunks of one job in a row, and what
    they read of it (its rows, a stage's setup) never changes once written."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key: Any, load: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = load()
        if value is not None:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


_jobs_seen = _Recent(4)
_setups_seen = _Recent(16)


def rows_of(counts: Sequence[Sequence[int]]) -> Rows:
    """A job's aggregated ``[heads, flips, count]`` rows as the estimators take them."""
    table = np.asarray(counts, dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


def replicates_of(record: JobRecord, analysis: str) -> int:
    """B: replicates per stage of the analysis."""
    spec = record.spec
    asked = spec.bootstrap if analysis == BOOTSTRAP else spec.test_components
    assert asked is not None, f"{analysis} was not asked for"
    return asked.replicates


def run(
    record: JobRecord, rows: Rows, analysis: str, stage: int, setup: dict, indices: Sequence[int]
) -> list[dict[str, Any]]:
    """The replicates with these indices of one stage."""
    spec = record.spec
    if analysis == BOOTSTRAP:
        assert spec.bootstrap is not None
        return bootstrap_chunk(
            spec.bootstrap.kind, *rows, setup["thetas"], setup["weights"],
            seed=spec.seed, indices=indices, mixing=spec.weights,
        )
    return lrt_chunk(
        *rows, k=stage, null=setup["null"], alternative=setup["alternative"],
        seed=spec.seed, indices=indices, mixing=spec.weights,
    )


# --- starting and resuming stages ------------------------------------------------------------


def start_bootstrap(jobs: JobStore, send: Dispatcher, record: JobRecord, part: Part) -> None:
    """Start the bootstrap from the EM fit of the job's counts (``record.counts``); its part
    is saved, with the intervals, when the bootstrap ends."""
    assert part.estimate is not None
    setup = {
        "part": part.to_json(),
        "thetas": list(part.estimate.thetas),
        "weights": list(part.estimate.weights),
    }
    start_stage(jobs, send, record, rows_of(record.counts), BOOTSTRAP, 0, setup)


def bootstrap_started(jobs: JobStore, job_id: str) -> bool:
    """True once the bootstrap's stage is stored (a redelivered fit resumes it)."""
    return jobs.stage_setup(job_id, BOOTSTRAP, 0) is not None


def run_components_test(jobs: JobStore, send: Dispatcher, record: JobRecord) -> bool:
    """Start the components test on the job's counts (``record.counts``), or resume the
    stage it reached. True when the fits may go on at once: the test cannot run on these
    data (its error is kept for the result)."""
    stage = 0
    while jobs.stage_setup(record.id, COMPONENTS_TEST, stage + 1) is not None:
        stage += 1
    if stage:
        resume_stage(jobs, send, record, COMPONENTS_TEST, stage)
        return False
    assert record.spec.test_components is not None
    rows = rows_of(record.counts)
    try:
        top = check_max_components(
            record.spec.test_components.max_components, rows[1], rows[0].size
        )
    except ValueError as exc:
        jobs.keep_outcome(record.id, TEST_ERROR, JobError(
            code=ErrorCode.FIT_FAILED.value, message=f"components test: {exc}"
        ).to_json())
        return True
    _start_test_stage(jobs, send, record, rows, 1, top)
    return False


def _start_test_stage(
    jobs: JobStore, send: Dispatcher, record: JobRecord, rows: Rows, k: int, top: int
) -> None:
    null, alternative = _full_fit(jobs, record, rows, k), _full_fit(jobs, record, rows, k + 1)
    setup = {
        "null": null,
        "alternative": alternative,
        "observed": observed_statistic(null["log_likelihood"], alternative["log_likelihood"]),
        "top": top,
    }
    start_stage(jobs, send, record, rows, COMPONENTS_TEST, k, setup)


def _full_fit(jobs: JobStore, record: JobRecord, rows: Rows, coins: int) -> dict[str, Any]:
    """The test's full-data fit of ``coins`` coins: stage k's alternative is stage k+1's
    null, kept so that it is fitted once."""
    name = f"{COMPONENTS_TEST}:fit:{coins}"
    kept = jobs.outcome(record.id, name)
    if kept is not None:
        return kept
    spec = record.spec
    summary = fit_summary(
        full_fit(*rows, coins, restarts=spec.restarts, seed=spec.seed, mixing=spec.weights)
    )
    jobs.keep_outcome(record.id, name, summary)
    return summary


def start_stage(
    jobs: JobStore,
    send: Dispatcher,
    record: JobRecord,
    rows: Rows,
    analysis: str,
    stage: int,
    setup: dict[str, Any],
) -> None:
    """Time the first replicates, store the stage with its chunk layout once, keep those
    replicates as chunk 0 and send the other chunks."""
    settings = get_settings()
    total = replicates_of(record, analysis)
    budget = min(TIMING_SECONDS, settings.replicate_chunk_seconds / 4)
    timed: list[dict[str, Any]] = []
    began = time.perf_counter()
    while len(timed) < total and (not timed or time.perf_counter() - began < budget):
        timed += run(record, rows, analysis, stage, setup, [len(timed)])
    each = (time.perf_counter() - began) / len(timed)
    size = chunk_size(
        each, target_seconds=settings.replicate_chunk_seconds, largest=settings.replicate_chunk_max
    )
    layout = ChunkLayout(total, len(timed), size)
    started = jobs.start_stage(
        record.id, analysis, stage, {**setup, "layout": layout.to_json()}, replicates=total
    )
    if started is Saved.NO_JOB:
        return
    if started is Saved.ALREADY:
        # Started by an earlier delivery of this step: its layout holds.
        resume_stage(jobs, send, record, analysis, stage)
        return
    log.info(
        "%s stage %d started: %d replicates in %d chunks of %d (%.1f ms each)",
        analysis, stage, total, layout.chunks, size, each * 1000,
        extra={"job_id": record.id, "replicates": len(timed),
               "work_ms": round(each * len(timed) * 1000, 2)},
    )
    send.send_replicates(record.id, analysis, stage, range(1, layout.chunks))
    if jobs.save_chunk(record.id, analysis, stage, 0, timed, chunks=layout.chunks) is (
        Saved.COMPLETED
    ):
        finish_stage(jobs, send, record.id, analysis, stage)


def resume_stage(
    jobs: JobStore, send: Dispatcher, record: JobRecord, analysis: str, stage: int
) -> None:
    """Send the chunks of a started stage that are not saved, or run the step after it if
    none is missing: after a crash between a stage's start and its sends, or between its
    last save and the next step."""
    setup = jobs.stage_setup(record.id, analysis, stage)
    assert setup is not None
    layout = ChunkLayout.from_json(setup["layout"])
    saved = jobs.saved_chunks(record.id, analysis, stage)
    missing = [chunk for chunk in range(layout.chunks) if chunk not in saved]
    if missing:
        send.send_replicates(record.id, analysis, stage, missing)
    else:
        finish_stage(jobs, send, record.id, analysis, stage)


# --- one chunk ---------------------------------------------------------------------------------


def run_chunk(
    jobs: JobStore, send: Dispatcher, job_id: str, analysis: str, stage: int, chunk: int
) -> None:
    """Run one chunk and save it; the save that completes the stage takes the job on."""
    called = time.perf_counter()
    status, expires = jobs.status_and_expiry(job_id)
    if status is None or status.is_final:
        return  # cancelled (or gone) while the chunk waited: no work
    setup = _setups_seen.get_or(
        (job_id, expires, analysis, stage), lambda: jobs.stage_setup(job_id, analysis, stage)
    )
    if setup is None:
        return
    layout = ChunkLayout.from_json(setup["layout"])
    if jobs.has_chunk(job_id, analysis, stage, chunk):
        # Redelivered after its save: the crash may have come before the next step.
        if jobs.chunks_saved(job_id, analysis, stage) >= layout.chunks:
            finish_stage(jobs, send, job_id, analysis, stage)
        return
    loaded = _jobs_seen.get_or((job_id, expires), lambda: _load(jobs, job_id))
    if loaded is None:
        return
    record, rows = loaded
    began = time.perf_counter()
    replicates = _watched(jobs, record, rows, analysis, stage, setup, layout.indices(chunk))
    if replicates is None:
        return  # the job was cancelled mid-chunk
    worked = time.perf_counter()
    saved = jobs.save_chunk(job_id, analysis, stage, chunk, replicates, chunks=layout.chunks)
    # The chunk's own overhead: reading the job before the work, saving after it.
    timings = {
        "read_ms": round((began - called) * 1000, 2),
        "work_ms": round((worked - began) * 1000, 2),
        "save_ms": round((time.perf_counter() - worked) * 1000, 2),
    }
    log.info(
        "%s stage %d chunk %d: %d replicates", analysis, stage, chunk, len(replicates),
        extra={"job_id": job_id, "replicates": len(replicates), **timings},
    )
    if saved is Saved.COMPLETED or (
        saved is Saved.ALREADY and jobs.chunks_saved(job_id, analysis, stage) >= layout.chunks
    ):
        finish_stage(jobs, send, job_id, analysis, stage)


def _load(jobs: JobStore, job_id: str) -> tuple[JobRecord, Rows] | None:
    record = running_record(jobs, job_id)
    if record is None or record.counts is None:
        return None
    return record, rows_of(record.counts)


def _watched(
    jobs: JobStore,
    record: JobRecord,
    rows: Rows,
    analysis: str,
    stage: int,
    setup: dict[str, Any],
    indices: range,
) -> list[dict[str, Any]] | None:
    """The replicates, one at a time, or None as soon as the job is seen to have ended."""
    done: list[dict[str, Any]] = []
    checked = time.monotonic()
    for index in indices:
        if time.monotonic() - checked >= CHECK_SECONDS:
            checked = time.monotonic()
            status = jobs.status(record.id)
            if status is None or status.is_final:
                return None
        done += run(record, rows, analysis, stage, setup, [index])
    return done


# --- after a stage ---------------------------------------------------------------------------


def finish_stage(jobs: JobStore, send: Dispatcher, job_id: str, analysis: str, stage: int) -> None:
    """The step after a complete stage: the bootstrap's intervals and the job's result, or
    the test's p-value and its next stage (or the fits)."""
    record = running_record(jobs, job_id)
    if record is None:
        return
    if analysis == BOOTSTRAP:
        _finish_bootstrap(jobs, record)
    else:
        _finish_test_stage(jobs, send, record, stage)


def _finish_bootstrap(jobs: JobStore, record: JobRecord) -> None:
    spec = record.spec
    assert spec.bootstrap is not None
    setup = jobs.stage_setup(record.id, BOOTSTRAP, 0)
    assert setup is not None
    summary = summarize_bootstrap(
        jobs.stage_replicates(record.id, BOOTSTRAP, 0),
        kind=spec.bootstrap.kind, level=spec.bootstrap.level,
    )
    part = Part.from_json(setup["part"])
    assert part.estimate is not None
    estimate = dataclasses.replace(
        part.estimate, bootstrap=BootstrapIntervals.from_json(summary)
    )
    if jobs.save_part(record.id, dataclasses.replace(part, estimate=estimate)) is not (
        Saved.NO_JOB
    ):
        # Also when saved before: a crash may have come between that save and the result.
        store_result(jobs, record)


def _finish_test_stage(jobs: JobStore, send: Dispatcher, record: JobRecord, k: int) -> None:
    setup = jobs.stage_setup(record.id, COMPONENTS_TEST, k)
    assert setup is not None
    statistics = [
        r["statistic"] for r in jobs.stage_replicates(record.id, COMPONENTS_TEST, k)
        if not r["failed"]
    ]
    p = p_value(setup["observed"], statistics)
    jobs.keep_outcome(record.id, f"{COMPONENTS_TEST}:{k}",
                      {"k": k, "statistic": setup["observed"], "p_value": p})
    rejected = is_significant(p)
    if rejected and k + 1 < setup["top"]:
        rows = rows_of(record.counts or [])
        _start_test_stage(jobs, send, record, rows, k + 1, setup["top"])
        return
    tests = [jobs.outcome(record.id, f"{COMPONENTS_TEST}:{j}") for j in range(1, k + 1)]
    jobs.keep_outcome(record.id, COMPONENTS_TEST, {
        "replicates": replicates_of(record, COMPONENTS_TEST),
        "tests": tests,
        "selected": k + 1 if rejected else k,
    })
    # The fits waited for the test (it chooses their K when the job asks for "auto").
    send.start_fits(record.id, record.spec)
