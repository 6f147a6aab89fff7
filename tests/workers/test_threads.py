"""One BLAS and OpenMP thread in each prefork child, unless the operator chose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.threads import VARIABLES

ROOT = Path(__file__).resolve().parents[2]

# A fresh process with the fitting libraries loaded as a worker loads them; with
# ``send``, the signal a prefork child gets when it starts. Prints each library's threads.
_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from celery import signals
from threadpoolctl import threadpool_info
import workers.celery_app, workers.tasks
if {send}:
    signals.worker_process_init.send(sender=None)
print(json.dumps({{i["internal_api"]: i["num_threads"] for i in threadpool_info()}}))
"""


def _threads(send: bool, **variables: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | variables
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), send=send)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: one thread anyway")
def test_a_prefork_child_runs_one_thread_per_library():
    default = _threads(send=False)
    # Both libraries are loaded, and left alone they take a thread per core.
    assert {"openblas", "openmp"} <= set(default)
    assert default["openmp"] > 1
    assert set(_threads(send=True).values()) == {1}


def test_the_operators_own_variables_win():
    assert _threads(send=True, OMP_NUM_THREADS="2")["openmp"] == 2
