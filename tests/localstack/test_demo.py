"""``python -m localstack demo`` as ``make demo`` runs it, with the API's tokens configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_VARIABLES = ("API_PORT", "DRAWSOURCE_PORT", "WORKERS", "CPU_CONCURRENCY",
                   "IO_CONCURRENCY", "API_WORKERS")


@pytest.mark.integration
@pytest.mark.slow
def test_the_demo_authenticates_when_tokens_are_configured(tmp_path):
    # Whatever the test session set (its Redis URL, say) stays out of the child.
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("EMCOINS_", "DRAWSOURCE_")) and k not in STACK_VARIABLES
    }
    env.update(
        EMCOINS_API_TOKENS="first-secret-token,second-secret-token",
        EMCOINS_DATA_DIR=str(tmp_path / "data"),
        API_PORT="0",
        DRAWSOURCE_PORT="0",
        API_WORKERS="1",
        # The stack's log folder is a temporary one: keep it under the test's folder.
        TMPDIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "localstack", "demo"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded: 30 draws" in done.stdout
    assert "Traceback" not in done.stderr
    # The token is sent, never printed.
    assert "secret-token" not in done.stdout + done.stderr
