"""The project's performance targets, timed as a user waits for them: wall time of the real `coefgen`
command in a fresh process (interpreter start-up included), beside the fixed reference workload
(bench/reference.py) measured just before and just after each command.

    python bench/bench_targets.py [--json FILE] [--only NAME,...] [--timeout SECONDS]

Rows (ROWS): `coefgen check --jobs 2` of the committed default set, a cold `coefgen build --jobs 2` of it
into an empty temporary directory, and `coefgen solve -d kl -e aqp` at K = 1024 and 2048 at the default
parameters and several budgets. A solve that refuses its budget is a row too (outcome "refused", with the
start of its error line); a command still running after --timeout seconds is stopped (outcome "timeout").
With --json FILE the rows are written to FILE, one JSON object per line (bench/run_all.py assembles them
into docs/benchmarks.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_aqp import certificate_figures  # noqa: E402
from reference import child_cpu_seconds, reference_seconds  # noqa: E402

SOLVE = ["solve", "-d", "kl", "-e", "aqp"]
BUILD_OUT = "EMPTY_TMP_DIR/tables"  # stands for a fresh empty temporary directory in a row's args

# (name, group, label within the group, coefgen arguments, target wall seconds). Groups are the lines of the
# README's table (bench/run_all.py); a solve row's "-o FILE" is added when it runs.
ROWS = [
    ("check", "set", "check", ["check", "--out", "tables", "--jobs", "2"], 30.0),
    ("build-cold", "set", "cold build", ["build", "--jobs", "2", "--out", BUILD_OUT], 45.0),
    ("K1024-4plugin", "K1024-mse", "4plugin", SOLVE + ["--K", "1024", "--max-mse", "4plugin"], 10.0),
    ("K1024-4plugin-gamma0.75", "K1024-mse", "4plugin γ 0.75",
     SOLVE + ["--K", "1024", "--max-mse", "4plugin", "--gamma", "0.75"], 10.0),
    ("K1024-plugin", "K1024-mse", "plugin", SOLVE + ["--K", "1024", "--max-mse", "plugin"], 10.0),
    ("K1024-100plugin", "K1024-mse", "100plugin", SOLVE + ["--K", "1024", "--max-mse", "100plugin"], 10.0),
    ("K1024-tau100", "K1024-tau", "100", SOLVE + ["--K", "1024", "--tau", "100"], 10.0),
    ("K1024-tau20", "K1024-tau", "20", SOLVE + ["--K", "1024", "--tau", "20"], 10.0),
    ("K1024-tau10", "K1024-tau", "10", SOLVE + ["--K", "1024", "--tau", "10"], 10.0),
    ("K1024-tau1.5", "K1024-tau", "1.5", SOLVE + ["--K", "1024", "--tau", "1.5"], 10.0),
    ("K2048-4plugin-gamma0.75", "K2048", "4plugin γ 0.75",
     SOLVE + ["--K", "2048", "--max-mse", "4plugin", "--gamma", "0.75"], 40.0),
    ("K2048-plugin", "K2048", "plugin", SOLVE + ["--K", "2048", "--max-mse", "plugin"], 40.0),
    ("K2048-tau100", "K2048", "τ 100", SOLVE + ["--K", "2048", "--tau", "100"], 40.0),
]
ERROR_CHARS = 100


def run_row(name: str, group: str, label: str, args: list[str], target: float, timeout: float) -> dict:
    tmp = tempfile.mkdtemp(prefix="coefgen-bench-")
    try:
        cmd = [a.replace("EMPTY_TMP_DIR", tmp) for a in args]
        if cmd[0] == "solve":
            cmd += ["-o", os.path.join(tmp, "t.json")]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        r0 = reference_seconds()
        t0, c0 = time.perf_counter(), child_cpu_seconds()
        try:
            p = subprocess.run([sys.executable, "-m", "coefgen", *cmd], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=timeout)
            last = (p.stderr.strip().splitlines() or [""])[-1]
            # a solve that stops with coefgen's one-line error refused its budget; anything else failed
            outcome = "ok" if p.returncode == 0 else ("refused" if cmd[0] == "solve" and last.startswith("coefgen: error:")
                                                      else "failed")
        except subprocess.TimeoutExpired:
            p, outcome = None, "timeout"
        wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - c0
        r1 = reference_seconds()
        row = {"name": name, "group": group, "label": label, "args": args, "target_seconds": target,
               "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2) if p is not None else None,
               "reference_before": round(r0, 3), "reference_after": round(r1, 3), "outcome": outcome}
        if p is not None and p.returncode != 0:
            lines = [ln for ln in (p.stderr.strip().splitlines() or p.stdout.strip().splitlines()) if ln.strip()]
            row["error"] = (lines[-1].removeprefix("coefgen: error: ") if lines else f"exit {p.returncode}")[:ERROR_CHARS]
        if outcome == "timeout":
            row["error"] = f"stopped after {timeout:g} s"
        if outcome == "ok" and cmd[0] == "solve":
            with open(os.path.join(tmp, "t.json"), encoding="utf-8") as fh:
                fig = certificate_figures(json.load(fh))
            row["certificate"] = {"bias_over_level": fig["bias_over_level"], "sup_m": fig["mse_bound"],
                                  "gap": fig["gap"]}
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the rows to this JSON-lines file (overwritten)")
    ap.add_argument("--only", default="", help="comma-separated row names (default: every row)")
    ap.add_argument("--timeout", type=float, default=400.0, help="seconds before a command is stopped (default 400)")
    a = ap.parse_args(argv)
    only = [x for x in a.only.split(",") if x]
    unknown = sorted(set(only) - {r[0] for r in ROWS})
    if unknown:
        ap.error(f"--only: no row named {', '.join(unknown)} (rows: {', '.join(r[0] for r in ROWS)})")
    rows = []
    print(f"{'row':<26} {'wall':>7} {'cpu':>7} {'ref':>6} {'target':>6}  outcome", flush=True)
    for spec in ROWS:
        if only and spec[0] not in only:
            continue
        row = run_row(*spec, timeout=a.timeout)
        rows.append(row)
        ref = (row["reference_before"] + row["reference_after"]) / 2
        cpu = "" if row["cpu_seconds"] is None else f"{row['cpu_seconds']:.1f}"
        print(f"{row['name']:<26} {row['wall_seconds']:7.1f} {cpu:>7} {ref:6.3f} {row['target_seconds']:6g}  "
              f"{row['outcome']} {row.get('error', '')}", flush=True)
        if a.json:  # after every row: an interrupted run keeps what it measured
            with open(a.json + ".tmp", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
            os.replace(a.json + ".tmp", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
