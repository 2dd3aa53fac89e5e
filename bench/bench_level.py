"""Level benchmark (issue 4): time and proven digits of E*_K.

kl at K = 8, 64, 256, 1024 and K = 64 for alpha:0.5 and alpha:2.5 (default digits). If
`sollya` is on PATH, also times Sollya's remez on the identical problem (monomials 1..K,
range [2^-400, 1], prec 400, quality 1e-25) for kl at K = 8, 16, 32, 64 and prints the time
ratio and how many significant digits the two levels share.

Run: python bench/bench_level.py   (each case in a fresh process: no cache effects; `x ref` =
CPU seconds / the reference workload's, bench/reference.py, measured beside each case)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("kl", 8), ("kl", 64), ("kl", 256), ("kl", 1024), ("alpha:0.5", 64), ("alpha:2.5", 64)]
SOLLYA_KS = [8, 16, 32, 64]

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import coefgen.solvers.minimax as m
t1, c1 = time.perf_counter(), time.process_time()
L = m.minimax_level({name!r}, {K})
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({{"time": t2 - t1, "cpu": c2 - c1, "import": t1 - t0, "digits": L.digits, "level": L.level}}))
"""


def run_coefgen(name: str, K: int) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference import reference_seconds

    code = _CHILD.format(root=ROOT, name=name, K=K)
    r0 = reference_seconds()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["x_ref"] = res["cpu"] / ((r0 + reference_seconds()) / 2)
    return res


def run_sollya(K: int) -> tuple[float, str]:
    mons = ",".join(str(i) for i in range(1, K + 1))
    script = (
        "prec = 400!;\ndisplay = decimal!;\nf = x*log(x);\n"
        f"t0 = time(p = remez(f, [|{mons}|], [2^(-400);1], 1, 1e-25));\n"
        "print(t0);\nprint(dirtyinfnorm(p - f, [2^(-400);1]));\nquit;\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sol", delete=False) as fh:
        fh.write(script)
        path = fh.name
    try:
        out = subprocess.run(["sollya", path], capture_output=True, text=True, timeout=1800).stdout
    finally:
        os.unlink(path)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return float(lines[-2]), lines[-1]


def shared_digits(a: str, b: str) -> int:
    import mpmath

    with mpmath.workdps(80):
        x, y = mpmath.mpf(a), mpmath.mpf(b)
        if x == y:
            return 80
        return max(0, int(mpmath.floor(-mpmath.log10(abs(x - y) / abs(x)))))


def main() -> int:
    print(f"{'divergence':<11} {'K':>5} {'time [s]':>9} {'cpu [s]':>8} {'x ref':>7} {'digits':>6}  level")
    results = {}
    for name, K in CASES:
        r = run_coefgen(name, K)
        results[(name, K)] = r
        print(f"{name:<11} {K:>5} {r['time']:>9.3f} {r['cpu']:>8.3f} {r['x_ref']:>7.1f} {r['digits']:>6}  {r['level']}",
              flush=True)
    ok = results[("kl", 64)]["cpu"] <= 0.5 and results[("kl", 1024)]["cpu"] <= 30
    print(f"targets (kl K=64 <= 0.5 s, K=1024 <= 30 s, CPU): {'met' if ok else 'MISSED'}")
    if shutil.which("sollya") is None:
        print("sollya not on PATH: comparison skipped")
        return 0
    print("\nSollya remez (prec 400, quality 1e-25) vs coefgen, kl")
    print(f"{'K':>4} {'sollya [s]':>11} {'coefgen [s]':>12} {'ratio':>8} {'shared digits':>14}")
    for K in SOLLYA_KS:
        r = results.get(("kl", K)) or run_coefgen("kl", K)
        try:
            ts, lev = run_sollya(K)
        except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
            print(f"{K:>4} sollya failed: {e}")
            continue
        lev = re.sub(r"\s", "", lev)
        print(f"{K:>4} {ts:>11.3f} {r['time']:>12.3f} {ts / max(r['time'], 1e-9):>8.1f} "
              f"{shared_digits(r['level'], lev):>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
