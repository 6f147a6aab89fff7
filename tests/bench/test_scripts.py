"""The benchmark scripts still start: each answers --help (an import broken by a refactor
fails here, not on the day someone measures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


# cpu.py and sse.py are modules the others import, not scripts.
MODULES = ("__init__.py", "cpu.py", "sse.py")
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in MODULES)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_answers_help(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
