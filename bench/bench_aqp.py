"""AQP timings and quality (issues 5, 19): `coefgen solve` end to end, one fresh process per K.

    python bench/bench_aqp.py                          # kl, tau = 10, K = 8, 64, 256, 1024
    python bench/bench_aqp.py 256,1024 --tau 20
    python bench/bench_aqp.py 1024,2048 --max-mse 4plugin --gamma 0.75

Each solve is what a user runs (minimax level, solver, certification, file written), timed
beside the fixed reference workload (bench/reference.py) measured just before and after it
in the same run: the `x ref` column (CPU seconds / reference CPU seconds) is comparable
across machines and loads, the seconds are not. `seconds` is the solve's CPU time (single
thread: its wall time on an idle machine); `wall` is the wall time of this run. Printed per K: seconds, x ref, certified
sup|b| / E*_K, certified sup m, the solver's lower bound on its objective and the relative
gap, exchange rounds. A K for which no double-precision table meets the budget prints the
refusal instead. With --json FILE the rows are also written as JSON (bench/run_all.py)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from reference import child_cpu_seconds, reference_seconds  # noqa: E402


def solve_once(K: int, args: list[str], divergence: str = "kl") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.json")
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        r0 = reference_seconds()
        t0, c0 = time.perf_counter(), child_cpu_seconds()
        p = subprocess.run([sys.executable, "-m", "coefgen.cli", "solve", "-d", divergence, "--K", str(K),
                            "-e", "aqp", *args, "-o", out], cwd=ROOT, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - c0
        r1 = reference_seconds()
        row = {"K": K, "args": " ".join(args), "seconds": round(cpu, 2), "wall_seconds": round(wall, 2),
               "reference_seconds": round((r0 + r1) / 2, 3), "x_ref": round(cpu / ((r0 + r1) / 2), 1)}
        if p.returncode != 0:
            row["refused"] = (p.stderr.strip().splitlines() or ["?"])[-1]
            return row
        with open(out, encoding="utf-8") as fh:
            d = json.load(fh)
    row.update(certificate_figures(d))
    return row


def certificate_figures(d: dict) -> dict:
    """The figures a row quotes from a written aqp table (its JSON, loaded): certified sup|b| over the minimax
    level's upper end, certified sup m, the solver's lower bound, relative gap and exchange rounds."""
    sol = d["estimator_params"].get("solver", {})
    return {
        "bias_over_level": float(d["bias_bound"]) / float(d["minimax_level_bracket"][1]),
        "mse_bound": float(d["mse_bound"]), "objective_lower": sol.get("objective_lower"),
        "gap": sol.get("gap"), "rounds": sol.get("rounds"),
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("Ks", nargs="?", default="8,64,256,1024")
    ap.add_argument("--tau", default=None)
    ap.add_argument("--max-mse", dest="max_mse", default=None, help="a number or '<k>plugin' (then tau is unused)")
    ap.add_argument("--gamma", default=None)
    ap.add_argument("--objective", default=None)
    ap.add_argument("--divergence", default="kl")
    ap.add_argument("--json", default=None, help="append the rows to this JSON-lines file")
    a = ap.parse_args(argv)
    args = []
    for flag, v in (("--tau", a.tau), ("--max-mse", a.max_mse), ("--gamma", a.gamma), ("--objective", a.objective)):
        if v is not None:
            args += [flag, str(v)]
    if a.tau is None and a.max_mse is None:
        args = ["--tau", "10", *args]
    print(f"aqp {a.divergence} {' '.join(args)}  (coefgen solve, fresh process per K, OMP_NUM_THREADS=1)")
    print(f"{'K':>5} {'seconds':>8} {'wall':>7} {'x ref':>7} {'sup|b|/E*':>10} {'sup m':>12} {'lower':>12} {'gap':>9} rounds")
    for K in [int(x) for x in a.Ks.split(",")]:
        row = solve_once(K, args, a.divergence)
        if "refused" in row:
            print(f"{K:>5} {row['seconds']:8.2f} {row['wall_seconds']:7.1f} {row['x_ref']:7.1f}  refused: {row['refused']}", flush=True)
        else:
            print(f"{K:>5} {row['seconds']:8.2f} {row['wall_seconds']:7.1f} {row['x_ref']:7.1f} {row['bias_over_level']:10.4f} "
                  f"{row['mse_bound']:12.6g} {row['objective_lower']:12.6g} {row['gap']:9.2e} {row['rounds']}",
                  flush=True)
        if a.json:
            with open(a.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(dict(row, bench="aqp", divergence=a.divergence)) + "\n")


if __name__ == "__main__":
    main()
