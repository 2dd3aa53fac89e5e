"""Best-of-n benchmark (issue 12): exact KL / win rate / estimator for N outcomes and n draws.

Target: N = 10^4 outcomes and n = 10^4 in <= 2 s (one n). Also times a full sweep
n = 1..10^4 at N = 10^4 (vectorised, blocks of n), N = 10^6 at one n, and the whole
`coefgen bon` command (interpreter start and imports included).

Run: python bench/bench_bon.py"""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(fn, repeat=3):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    from coefgen import bon

    print(f"{'case':<44} {'time [s]':>9}  KL / bound / win rate")
    ok = True
    for spec, ns, repeat in [
        ("uniform:10000", [10_000], 3),
        ("zipf:1.1:10000", [10_000], 3),
        ("geometric:1.001:10000", [10_000], 3),
        ("zipf:1.1:1000000", [10_000], 1),
        ("zipf:1.1:10000", list(range(1, 10_001)), 1),
    ]:
        def job():
            probs, rewards = bon.reference_family(spec)
            ref = bon.prepare_reference(probs, rewards)
            return bon.bon_sweep(ref, ns)

        t, sw = timed(job, repeat)
        label = f"{spec}, n = {ns[0]}" if len(ns) == 1 else f"{spec}, n = 1..{ns[-1]} (sweep)"
        print(f"{label:<44} {t:>9.3f}  {sw['kl'][-1]:.6f} / {sw['kl_bound'][-1]:.6f} / {sw['win_rate'][-1]:.6f}",
              flush=True)
        if len(ns) == 1 and spec.endswith(":10000"):
            ok &= t <= 2.0
    cmd = [sys.executable, "-m", "coefgen.cli", "bon", "--reference", "zipf:1.1:10000", "--n", "10000"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    t = time.perf_counter() - t0
    print(f"{'coefgen bon -r zipf:1.1:10000 --n 10000':<44} {t:>9.3f}  (whole command, exit {r.returncode})")
    ok &= r.returncode == 0 and t <= 2.0
    print(f"target (N = 10^4, n = 10^4 in <= 2 s, one n): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
