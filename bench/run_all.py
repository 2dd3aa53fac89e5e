"""`make bench`: run every bench/bench_*.py in a fixed order and print what each reports.

Set BENCH_ONLY=level,aqp to run a subset."""

import os
import subprocess
import sys
import time

ORDER = ["certify", "level", "aqp", "build"]
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    only = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]
    status = 0
    for name in ORDER:
        if only and name not in only:
            continue
        script = os.path.join(HERE, f"bench_{name}.py")
        if not os.path.exists(script):
            continue
        print(f"== bench_{name} ==", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, script], cwd=os.path.dirname(HERE))
        print(f"== bench_{name}: exit {r.returncode}, {time.perf_counter() - t0:.1f} s ==\n", flush=True)
        status |= r.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
