"""The fixed reference workload every timing in ``make bench`` is divided by.

The machine is shared and its speed varies from minute to minute, so a bench reports each
time as a ratio to this workload measured in the same run (just before the timed step, and
again after it: the ratio uses their mean); both are CPU times (see ``reference_seconds``).
The workload is fixed (changing it breaks the comparison with figures measured before):
single-threaded float64 linear algebra and Python-level numpy calls, about 0.3 s of CPU on
the repository's 2-core machine.

    python bench/reference.py         # prints the workload's time in seconds
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _workload() -> float:
    rng = np.random.default_rng(20261204)
    acc = 0.0
    A = rng.standard_normal((300, 300)) + 300 * np.eye(300)
    for _ in range(60):  # dense factorisations (BLAS/LAPACK)
        x = np.linalg.solve(A, rng.standard_normal(300))
        acc += float(x[0])
    p = np.linspace(1e-6, 1 - 1e-6, 4000)
    j = np.arange(257)
    for _ in range(40):  # exp/log on large arrays (as in the Bernstein evaluations)
        acc += float(np.exp(j[None, :] * np.log(p)[:, None] / 256).sum())
    for _ in range(20000):  # many small numpy calls (Python overhead)
        acc += float(np.dot(p[:16], p[16:32]))
    return acc


def reference_seconds(repeat: int = 3) -> float:
    """Smallest CPU time (user + system, this process) of ``repeat`` runs of the workload.

    CPU time, not wall time: on a shared machine wall time also counts the minutes other
    processes hold the cores; CPU time still varies with cache and memory contention, which
    the ratio to this workload measured beside the timed step absorbs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        _workload()
        best = min(best, time.process_time() - t0)
    return best


def child_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process's finished children."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


if __name__ == "__main__":
    print(f"{reference_seconds():.3f}")
