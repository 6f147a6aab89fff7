"""Fixed glibc malloc thresholds for worker processes, so that refits reuse their memory.

glibc serves a block above its mmap threshold (128 KiB at first) with fresh pages, one page
fault per 4 KiB, and gives the heap's free top back to the system above its trim threshold
(128 KiB at first). Both move with the process's history: freeing a large mapped block
raises the first to its size and the second to twice that. A cpu worker that ran a job's
full fit (arrays of 100 screening runs) has them high, and its replicate refits, whose
temporaries of a few MiB come and go hundreds of times a second, reuse the heap; a worker
that only ever ran refits keeps them low, and faults its temporaries in again on every
refit. Measured with ``bench/scale.py`` (two workers): such a worker took 575,000 page
faults and 1.3 s of system time in 6 s of chunks, and in six runs its chunks took 20 to
56% longer than the other worker's.

Fixed thresholds take the history out: blocks up to 32 MiB (glibc's largest mmap
threshold on 64-bit) come from the heap, and up to 64 MiB of its free top stays with the
process. Larger arrays are mapped as before. Only the single-threaded children of a
prefork pool set them: a process of many threads has a heap per thread (up to 8 per
core), and each could keep its 64 MiB. Without glibc (musl, macOS) nothing changes, and
glibc's own ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` win when set.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_heap() -> bool:
    """Fix this process's malloc thresholds (see the module docstring); whether they were
    set."""
    if platform.libc_ver()[0] != "glibc":
        return False
    # glibc's own variables, which glibc has already applied, not settings of the project.
    if any(name in os.environ for name in _ENVIRONMENT):
        return False  # the operator chose
    libc = ctypes.CDLL(None)
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and ok
    if not ok:
        log.warning("mallopt refused the heap thresholds; refits may fault their memory in")
    return ok
