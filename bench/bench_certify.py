"""Run time and tightness of coefgen.certify (issue 3).

Plain script: `python bench/bench_certify.py`. For each table it prints the best of a few
runs and the first (cold: per-K caches empty) run (wall clock, one thread of Python + numpy/BLAS) and the relative gaps reached.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from scipy.special import digamma

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coefgen.certify import certify  # noqa: E402
from coefgen.rewards import parse_reward  # noqa: E402


def timed(values, reward, repeat):
    times = []
    cert = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        cert = certify(values, reward)
        times.append(time.perf_counter() - t0)
    return times[0], min(times), cert


def main() -> None:
    kl = parse_reward("kl")
    rows = []
    for K, repeat in [(64, 5), (256, 3), (1024, 3)]:
        c = np.arange(1, K + 1)
        rows.append((f"kl plugin  K={K}", np.log(c / K), kl, repeat))
        rows.append((f"kl digamma K={K}", digamma(c) - digamma(K), kl, repeat))
    print(f"{'table':<20} {'first [s]':>9} {'best [s]':>9} {'gap bias':>10} {'gap var':>10} {'gap mse':>10}   sup|b| bracket")
    for name, values, reward, repeat in rows:
        first, dt, cert = timed(values, reward, repeat)
        b = cert.bias
        print(
            f"{name:<20} {first:9.3f} {dt:9.3f} {b.rel_gap:10.2e} {cert.variance.rel_gap:10.2e} {cert.mse.rel_gap:10.2e}"
            f"   [{b.lower:.10g}, {b.upper:.10g}] at p={b.witness:.4g}"
        )


if __name__ == "__main__":
    main()
