"""One BLAS and one OpenMP thread in each child of a prefork pool, where the fits run.

A cpu worker's pool already runs a child per core (``CPU_CONCURRENCY``). Threads of
numpy's OpenBLAS or of scikit-learn's libgomp on top of them oversubscribe the cores, and
libgomp's idle threads spin for a while after each parallel region, such as the GMM
baseline's k-means: the fits of ``bench/load.py``'s jobs took 9.2 ms of CPU each with
the libraries' defaults, against 4.5 ms with one thread, for the same 4.7 ms of wall
time. The local stack and the image (so compose and Kubernetes too) set
``OMP_NUM_THREADS`` and its kin to 1, but a worker started by hand does not: each child
sets its own limits, unless the operator chose with those variables.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_thread() -> bool:
    """Limit the BLAS and OpenMP libraries loaded in this process to one thread each
    (the limits stay for the process's life); whether it did."""
    if any(name in os.environ for name in VARIABLES):
        return False  # the operator chose
    threadpool_limits(limits=1)
    return True
