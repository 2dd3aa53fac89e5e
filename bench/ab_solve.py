"""Time `coefgen solve` from two checkouts in the same run, each beside the reference workload.

    python bench/ab_solve.py OLD_CHECKOUT NEW_CHECKOUT K [solve options...]
    python bench/ab_solve.py /tmp/old . 1024 --max-mse 4plugin

Each checkout runs `python -m coefgen.cli solve -d kl --K K -e aqp [options]` in a fresh
process with that checkout first on the path (OMP_NUM_THREADS=1); printed: the child's CPU
seconds (getrusage), its wall time, the reference workload's CPU seconds measured just before
and after (bench/reference.py) and the ratio CPU / mean reference."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference import child_cpu_seconds, reference_seconds  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    old, new, K, *extra = argv
    for name, root in (("old", old), ("new", new)):
        root = os.path.abspath(root)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "t.json")
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=root)
            r0 = reference_seconds()
            t0, c0 = time.perf_counter(), child_cpu_seconds()
            p = subprocess.run([sys.executable, "-m", "coefgen.cli", "solve", "-d", "kl", "--K", K, "-e", "aqp",
                                *extra, "-o", out], cwd=root, env=env, capture_output=True, text=True)
            wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - c0
            r1 = reference_seconds()
        tail = (p.stderr.strip().splitlines() or [""])[-1][:160]
        print(f"{name} K={K} {' '.join(extra)}: cpu {cpu:.1f} s (wall {wall:.1f}), reference cpu {r0:.3f}/{r1:.3f} s, "
              f"ratio {cpu / ((r0 + r1) / 2):.0f}, exit {p.returncode} {tail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
