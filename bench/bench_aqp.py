"""AQP timings and quality (issue 5): kl, worst objective, tau = 10 by default.

    python bench/bench_aqp.py                 # K = 8, 64, 256, 1024
    python bench/bench_aqp.py 8,16,32,64 --tau 10

Prints, per K: solve time (the minimax level E*_K is computed first and timed separately),
certified sup|b| / E*_K, certified sup m, the solver's lower bound on the optimum and the gap.
A K for which no double-precision table meets the budget prints the refusal instead."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coefgen.certify import certify  # noqa: E402
from coefgen.errors import CoefgenError  # noqa: E402
from coefgen.rewards import parse_reward  # noqa: E402
from coefgen.solvers.aqp import solve_aqp  # noqa: E402
from coefgen.solvers.minimax import minimax_level  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("Ks", nargs="?", default="8,64,256,1024")
    ap.add_argument("--tau", type=float, default=10)
    ap.add_argument("--divergence", default="kl")
    ap.add_argument("--objective", default="worst")
    ap.add_argument("--max-mse", dest="max_mse", default=None, help="a number or 'plugin' (then tau is unused)")
    a = ap.parse_args(argv)
    reward = parse_reward(a.divergence)
    mode = f"max_mse={a.max_mse}" if a.max_mse else f"tau={a.tau:g}"
    print(f"aqp {reward.name} {mode} objective={a.objective}")
    print(f"{'K':>5} {'level_s':>8} {'solve_s':>8} {'sup|b|/E*':>10} {'sup m':>12} {'lower':>12} {'gap':>9}  rounds")
    for K in [int(x) for x in a.Ks.split(",")]:
        t0 = time.perf_counter()
        level = float(minimax_level(reward, K).upper)
        t1 = time.perf_counter()
        c1 = time.process_time()
        try:
            if a.max_mse:
                max_mse = a.max_mse if a.max_mse == "plugin" else float(a.max_mse)
                sol = solve_aqp(reward, K, tau=None, objective=a.objective, max_mse=max_mse, level=level)
            else:
                sol = solve_aqp(reward, K, tau=a.tau, objective=a.objective, level=level)
        except CoefgenError as e:
            print(f"{K:>5} {t1 - t0:8.2f} {time.perf_counter() - t1:8.2f} (cpu {time.process_time() - c1:.2f})  refused: {e}",
                  flush=True)
            continue
        t2 = time.perf_counter()
        c2 = time.process_time()
        cert = certify(sol.values, reward)
        d = sol.params
        print(f"{K:>5} {t1 - t0:8.2f} {t2 - t1:8.2f} {cert.bias.upper / level:10.6f} {cert.mse.upper:12.6g} "
              f"{d['objective_lower']:12.6g} {d['gap']:9.2e}  {d['rounds']}  (cpu {c2 - c1:.2f}s)", flush=True)


if __name__ == "__main__":
    main()
