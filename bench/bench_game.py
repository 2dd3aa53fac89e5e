"""Game timings (issue 10): a stochastic run and mean-field equilibria.

    python bench/bench_game.py

Prints: (1) P = 1024 prompts, M = 20 answers (zipf:1.5:20), K = 64 (kl plug-in table),
5000 steps of SGD with the leave-one-out baseline, wall and CPU seconds (goal ≤ 20 s on 2 cores);
(2) the mean-field equilibrium at K = 1024 (kl plug-in) for zipf:1.1:100 (one distinct
target row) and dirichlet:1:20 with 16 prompts (16 distinct rows), seconds (goal ≤ 2 s); (3) the mean field of the K = 16 default-parameter aqp table
under LOO on zipf:1.0:1000 (converged, goal ≤ 5 s).
Run it with OMP_NUM_THREADS=1 and without to compare (numpy's threads barely matter here:
the run is a sequence of small vector operations)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coefgen.game import make_targets, mean_field_equilibrium, stochastic_run  # noqa: E402


def timed(f):
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, cpu count {os.cpu_count()}")
    K = 64
    t = np.log(np.arange(1, K + 1) / K)
    q = make_targets("zipf:1.5:20", 1024)
    run, wall, cpu = timed(lambda: stochastic_run(t, q, steps=5000, lr=1.0, baseline="loo", seed=0))
    status = 0 if wall <= 20 else 1
    print(f"stochastic run P=1024 M=20 K=64 5000 steps sgd/loo: {wall:.2f} s wall, {cpu:.2f} s cpu, "
          f"final KL {run.kl_mean[-1]:.4g}  [goal <= 20 s: {'ok' if wall <= 20 else 'MISSED'}]")
    K = 1024
    t = np.log(np.arange(1, K + 1) / K)
    for spec, P in (("zipf:1.1:100", 1), ("dirichlet:1:20", 16)):
        q = make_targets(spec, P, seed=0)
        mean_field_equilibrium(np.log(np.arange(1, 9) / 8), q)  # warm-up (imports, caches)
        mf, wall, cpu = timed(lambda: mean_field_equilibrium(t, q, "kl"))
        ok = wall <= 2
        status |= 0 if ok else 1
        print(f"mean field K=1024 {spec} P={P}: {wall:.2f} s wall, {cpu:.2f} s cpu, {mf.steps} steps, "
              f"KL {mf.kl_mean:.4g}, residual {mf.residual.max():.1e}, converged {mf.converged}  "
              f"[goal <= 2 s: {'ok' if ok else 'MISSED'}]")
    # (3) heavy tail under LOO (issue 16.5): a no-baseline table whose first K-1 entries decrease near p = 1
    from coefgen.compiler import compile_table

    t = np.array(compile_table("kl", 16, "aqp", {"max_mse": "4plugin", "gamma": 0.75})["values"])
    q = make_targets("zipf:1.0:1000", 1)
    mf, wall, cpu = timed(lambda: mean_field_equilibrium(t, q, "kl", baseline="loo"))
    ok = mf.converged and wall <= 5
    status |= 0 if ok else 1
    print(f"mean field K=16 aqp default under loo, zipf:1.0:1000: {wall:.2f} s wall, {cpu:.2f} s cpu, {mf.steps} steps, "
          f"KL {mf.kl_mean:.4g}, residual {mf.residual.max():.1e}, converged {mf.converged}, method {sorted(set(map(str, mf.method)))}  "
          f"[goal: converged, <= 5 s: {'ok' if ok else 'MISSED'}]")
    return status


if __name__ == "__main__":
    sys.exit(main())
