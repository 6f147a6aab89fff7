"""EMCOINS_MAX_QUEUED is exact under concurrency: the check and the creation are one step."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from localstack.stack import Stack, StackConfig

JOB = {"counts": [[3, 10], [7, 10]], "n_components": 2}


@pytest.mark.integration
def test_200_concurrent_submissions_accept_at_most_the_limit(tmp_path):
    # No workers: every accepted job stays unfinished, so each one holds its slot.
    config = StackConfig(
        api_port=0, start_drawsource=False, start_workers=False, api_workers=2,
        env={"EMCOINS_MAX_QUEUED": "50"}, log_dir=tmp_path,
    )
    with Stack(config) as stack, requests.Session() as session:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=64)
        session.mount("http://", adapter)

        def submit(_: int) -> int:
            return session.post(f"{stack.api_url}/jobs", json=JOB, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=64) as pool:
            statuses = Counter(pool.map(submit, range(200)))
        assert statuses == {202: 50, 429: 150}
        # And the store agrees: 50 unfinished jobs, no more.
        assert session.post(f"{stack.api_url}/jobs", json=JOB, timeout=10).status_code == 429
