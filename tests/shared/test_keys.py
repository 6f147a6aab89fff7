"""Every Redis key comes from one builder, and bad ids cannot alias other keys."""

import pytest

from shared import keys


def test_key_scheme():
    assert keys.job("abc") == "emcoins:job:abc"
    assert keys.job_draws("abc") == "emcoins:job:abc:draws"
    assert keys.unfinished_jobs() == "emcoins:jobs:unfinished"


@pytest.mark.parametrize("bad", ["", "a:b"])
def test_bad_ids_are_refused(bad):
    with pytest.raises(ValueError, match="cannot name a Redis key"):
        keys.job(bad)
