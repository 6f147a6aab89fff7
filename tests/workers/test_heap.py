"""The fixed malloc thresholds: temporaries of a few MiB that come and go reuse the heap."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

# A fresh process, so that no earlier allocation has moved glibc's thresholds: one 1 MiB
# array mapped and freed (glibc's dynamic thresholds rise to 1 MiB, 2 MiB for the trim),
# then 50 rounds of eight 1 MiB arrays held at once and freed, as a refit's temporaries
# are. Prints the page faults of the rounds.
_ROUNDS = """
import resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from workers.heap import keep_heap
if {keep}:
    assert keep_heap()
np.ones(1 << 17)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    held = [np.ones(1 << 17) for _ in range(8)]
    del held
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

PAGES_PER_ROUND = 8 * (1 << 20) // resource.getpagesize()


def _faults(keep: bool) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    script = _ROUNDS.format(root=str(ROOT), keep=keep)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_fixed_thresholds_fault_the_temporaries_in_once():
    # Without them, the heap's top is trimmed after each round and faulted in again.
    assert _faults(keep=False) > 40 * PAGES_PER_ROUND
    assert _faults(keep=True) < 2 * PAGES_PER_ROUND


def test_the_operators_own_glibc_variables_win(monkeypatch):
    from workers.heap import keep_heap

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_heap() is False
