"""`make bench`: run every bench/bench_*.py in a fixed order and print what each reports.

Set BENCH_ONLY=level,aqp to run a subset."""

import os
import subprocess
import sys
import time

# (name, extra arguments): the AQP bench runs the tau = 10 sweep (K = 8..64 are the
# prototype's checkpoints), then the default set's large-K mode (max_mse = plugin), then
# tau = 100 at K = 1024.
RUNS = [
    ("certify", []),
    ("level", []),
    ("aqp", ["8,16,32,64,128,256,1024"]),
    ("aqp", ["128,256,512,1024", "--max-mse", "plugin"]),
    ("aqp", ["1024", "--tau", "100"]),
    ("build", []),
    ("game", []),
]
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    only = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]
    status = 0
    for name, args in RUNS:
        if only and name not in only:
            continue
        script = os.path.join(HERE, f"bench_{name}.py")
        print(f"== bench_{name} {' '.join(args)} ==", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, script, *args], cwd=os.path.dirname(HERE))
        print(f"== bench_{name}: exit {r.returncode}, {time.perf_counter() - t0:.1f} s ==\n", flush=True)
        status |= r.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
