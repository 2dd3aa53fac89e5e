"""Table-set build timings (issue 6): cold build of the default spec with --jobs 2, warm no-op
rebuild, and `coefgen check`.

    python bench/bench_build.py [--jobs 2] [--config coefgen.yaml] [--keep DIR]

Runs the real CLI in subprocesses (what a user waits for, interpreter start-up included).
The cold build prints its per-table summary (solve time per table). The cold build of the
default spec may take minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def run(args, quiet_output=False):
    cmd = [sys.executable, "-m", "coefgen.cli"] + args
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if not quiet_output:
        sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed with exit {proc.returncode}")
    return seconds, proc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--config", default=None, help="spec file (default: the embedded default spec)")
    ap.add_argument("--keep", default=None, help="build into this directory and keep it")
    opts = ap.parse_args()
    tmp = None
    if opts.keep:
        out = opts.keep
        shutil.rmtree(out, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix="coefgen-bench-")
        out = os.path.join(tmp, "tables")
    cfg = ["--config", opts.config] if opts.config else []
    jobs = ["--jobs", str(opts.jobs)]
    try:
        print(f"== cold build ({opts.config or 'embedded default spec'}, --jobs {opts.jobs}) into {out}")
        cold, _ = run(["build", *cfg, "--out", out, *jobs])
        n = sum(1 for f in os.listdir(out) if f.endswith(".json") and f != "manifest.json")
        print(f"cold build: {cold:.1f} s for {n} tables")
        warm, proc = run(["build", *cfg, "--out", out, *jobs], quiet_output=True)
        print(f"warm no-op build: {warm:.2f} s  ({proc.stderr.strip().splitlines()[-1]})")
        chk, _ = run(["check", *cfg, "--out", out, *jobs, "--quiet"])
        print(f"check: {chk:.1f} s (identical)")
        print(f"\nsummary: cold {cold:.1f} s, warm {warm:.2f} s, check {chk:.1f} s (--jobs {opts.jobs}, {os.cpu_count()} CPUs)")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
