"""`make bench`: run every bench/bench_*.py in a fixed order and print what each reports,
every duration also as a ratio to the fixed reference workload (bench/reference.py) measured
in the same run, so that figures from a loaded or a different machine can be compared.

    python bench/run_all.py                                          # the run (what `make bench` does first)
    python bench/run_all.py --from-json docs/benchmarks.json --update-page   # then: the pages, from the JSON alone
    python bench/run_all.py --from-json docs/benchmarks.json --markdown -    # the generated sections, to stdout

Set BENCH_ONLY=targets,level to run a subset, BENCH_TARGETS=check,K1024-tau100 to time only some of the
performance-target rows, BENCH_NOTE="..." to record a note with the run (e.g. that other jobs were running).

The performance-target rows (bench/bench_targets.py: `coefgen check`, a cold `coefgen build`, `coefgen
solve` at K = 1024 and 2048) are written with the machine and every reference measurement to
docs/benchmarks.json (committed; sorted keys, fixed rounding, so that a re-run diffs line by line).
--update-page regenerates from that JSON alone, with no timing, the table of README.md and the sections
of docs/benchmarks.md between their marker comments (bench/generated.py); tests/test_bench_fragment.py
checks that the pages are what the committed JSON renders. The AQP rows of bench_aqp.py are also written,
one JSON object per line, to bench/out/results.jsonl (overwritten each run), and as a Markdown table to
bench/out/results.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import generated  # noqa: E402
from reference import child_cpu_seconds, reference_seconds  # noqa: E402

# (name, extra arguments). targets: the performance-target rows (bench_targets.py: check, cold build, solve at
# K = 1024 and 2048). AQP: the default set's kl parameters and tau = 10 / 20 at K <= 512.
RUNS = [
    ("targets", []),
    ("certify", []),
    ("level", []),
    ("aqp", ["8,64,256"]),
    ("aqp", ["256,512", "--max-mse", "4plugin", "--gamma", "0.75"]),
    ("aqp", ["512", "--max-mse", "4plugin"]),
    ("aqp", ["256,512", "--tau", "10"]),
    ("aqp", ["256,512", "--tau", "20"]),
    ("build", []),
    ("bon", []),
    ("bon_quantile", []),
    ("game", []),
]
OUT = os.path.join(HERE, "out")
RESULTS = os.path.join(OUT, "results.jsonl")
MARKDOWN = os.path.join(OUT, "results.md")
TARGETS = os.path.join(OUT, "targets.jsonl")
BENCH_JSON = "docs/benchmarks.json"  # relative to the checkout
COMMAND = f"bench/run_all.py --from-json {BENCH_JSON} --update-page"
README, BENCH_PAGE = "README.md", "docs/benchmarks.md"

# The README's lines: one per group of rows (bench_targets.ROWS), in this order; the row labels follow the text.
GROUPS = {
    "set": "`coefgen check --jobs 2` / cold `coefgen build --jobs 2` of the default set",
    "K1024-mse": "`coefgen solve -d kl -e aqp --K 1024 --max-mse` 4plugin / 4plugin `--gamma 0.75` / plugin / 100plugin",
    "K1024-tau": "`coefgen solve -d kl -e aqp --K 1024 --tau` 100 / 20 / 10 / 1.5",
    "K2048": "`coefgen solve -d kl -e aqp --K 2048`: `--max-mse 4plugin --gamma 0.75` / `--max-mse plugin` / `--tau 100`",
}


# ------------------------------------------------------------------ figures derived from a row (the JSON's numbers)

def reference_of(row: dict) -> float:
    """The reference workload's seconds for a row: the mean of its measurements just before and just after."""
    return (row["reference_before"] + row["reference_after"]) / 2


def x_reference(row: dict) -> float:
    """The row's wall seconds as a multiple of the reference workload measured beside it."""
    return round(row["wall_seconds"] / reference_of(row), 1)


def result(row: dict) -> str:
    """met / missed against the row's target (wall seconds), or what stopped the command: refused (a solve
    that refused its budget), timeout (stopped: the target is missed), failed."""
    if row["outcome"] == "ok":
        return "met" if row["wall_seconds"] <= row["target_seconds"] else "missed"
    if row["outcome"] in ("refused", "timeout", "failed"):
        return row["outcome"]
    raise ValueError(f"row {row.get('name')!r}: unknown outcome {row['outcome']!r}")


# ------------------------------------------------------------------ the run

def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=10"], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None


def machine() -> dict:
    import numpy as np

    return {"nproc": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "platform": f"{platform.system()} {platform.machine()}"}


def assemble(rows: list[dict], steps: list[dict], load_start, load_end, note: str, commit: str | None) -> dict:
    """docs/benchmarks.json's content: the rows with their derived figures, the run's reference measurements."""
    out_rows = []
    for r in rows:
        r = dict(r, x_reference=x_reference(r), result=result(r))
        if r.get("certificate"):
            c = r["certificate"]
            r["certificate"] = {"bias_over_level": float(f"{c['bias_over_level']:.4g}"),
                                "sup_m": float(f"{c['sup_m']:.6g}"),
                                "gap": None if c.get("gap") is None else float(f"{c['gap']:.2e}")}
        out_rows.append(r)
    refs = [x for r in rows for x in (r["reference_before"], r["reference_after"])]
    return {
        "generated_by": "make bench (bench/run_all.py)",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": commit,
        "machine": dict(machine(), load_average_start=[round(x, 2) for x in load_start],
                        load_average_end=[round(x, 2) for x in load_end]),
        "note": note,
        "reference_seconds": {"min": min(refs), "max": max(refs), "mean": round(sum(refs) / len(refs), 3)},
        "rows": out_rows,
        "steps": steps,
    }


def dumps(data: dict) -> str:
    """The JSON text as committed: sorted keys, one value per line, floats as rounded by the run."""
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_markdown(rows: list[dict], ref: float) -> None:
    lines = [
        "<!-- generated by `make bench` (bench/run_all.py) from bench/out/results.jsonl; do not edit -->",
        f"Reference workload (bench/reference.py) in this run: {ref:.3f} s CPU. Timings are CPU seconds of "
        "`coefgen solve` (one thread; the wall time on an idle machine), x reference = their ratio to the "
        "reference measured beside each solve.",
        "",
        "| divergence | K | parameters | CPU seconds | x reference | certified sup\\|b\\| / E*_K | sup m | gap |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("bench") != "aqp":
            continue
        if "refused" in r:
            lines.append(f"| {r['divergence']} | {r['K']} | {r['args']} | {r['seconds']} | {r['x_ref']} | "
                         f"refused: {r['refused'][:80]} | | |")
        else:
            lines.append(f"| {r['divergence']} | {r['K']} | {r['args']} | {r['seconds']} | {r['x_ref']} | "
                         f"{r['bias_over_level']:.4g} | {r['mse_bound']:.6g} | {r['gap']:.2e} |")
    generated.write_atomic(MARKDOWN, "\n".join(lines) + "\n")


def run() -> int:
    only = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]
    status = 0
    load_start, commit = os.getloadavg(), _git_commit()  # the code measured: the checkout as the run starts
    ref0 = reference_seconds()
    print(f"reference workload: {ref0:.3f} s (every 'x ref' figure below is seconds / reference, "
          "measured in this run)\n", flush=True)
    os.makedirs(OUT, exist_ok=True)
    for path in (RESULTS, TARGETS):
        if os.path.exists(path):
            os.unlink(path)
    steps = []
    for name, args in RUNS:
        if only and name not in only:
            continue
        script = os.path.join(HERE, f"bench_{name}.py")
        extra = {"aqp": ["--json", RESULTS], "targets": ["--json", TARGETS]}.get(name, [])
        if name == "targets" and os.environ.get("BENCH_TARGETS"):
            extra += ["--only", os.environ["BENCH_TARGETS"]]
        print(f"== bench_{name} {' '.join(args)} ==", flush=True)
        r0 = reference_seconds()
        t0, c0 = time.perf_counter(), child_cpu_seconds()
        r = subprocess.run([sys.executable, script, *args, *extra], cwd=ROOT,
                           env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
        wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - c0
        r1 = reference_seconds()
        ref = (r0 + r1) / 2
        print(f"== bench_{name}: exit {r.returncode}, {wall:.1f} s wall, {cpu:.1f} s CPU = {cpu / ref:.1f} x reference ==\n",
              flush=True)
        steps.append({"bench": name, "args": args, "exit": r.returncode, "wall_seconds": round(wall, 1),
                      "cpu_seconds": round(cpu, 1), "reference_before": round(r0, 3), "reference_after": round(r1, 3)})
        status |= r.returncode
    rows = []
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    if rows:
        write_markdown(rows, ref0)
        print(f"AQP rows: {RESULTS}, {MARKDOWN}")
    if os.path.exists(TARGETS):
        with open(TARGETS, encoding="utf-8") as fh:
            targets = [json.loads(line) for line in fh if line.strip()]
        if targets:
            data = assemble(targets, steps, load_start, os.getloadavg(), os.environ.get("BENCH_NOTE", ""),
                            commit)
            generated.write_atomic(os.path.join(ROOT, BENCH_JSON), dumps(data))
            print(f"performance targets: {BENCH_JSON} (pages: python {COMMAND})")
    return status


# ------------------------------------------------------------------ the pages, from the JSON alone

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _secs(row: dict) -> str:
    """The wall seconds, in bold when over the target (a refusal that kept the user waiting longer included)."""
    if row["outcome"] == "timeout":
        return f"**> {row['wall_seconds']:.0f}**"
    s = f"{row['wall_seconds']:.1f}"
    return f"**{s}**" if row["wall_seconds"] > row["target_seconds"] else s


def _run_line(data: dict, full: bool) -> str:
    m, ref = data["machine"], data["reference_seconds"]
    where = f"{m['nproc']} CPUs, Python {m['python']}, numpy {m['numpy']}"
    if full:
        where += (f", {m['platform']}; load average {m['load_average_start'][0]:g} at the start, "
                  f"{m['load_average_end'][0]:g} at the end; commit {data['commit'] or 'unknown'}")
    note = f" {data['note'].rstrip('.')}." if data.get("note") else ""
    return (f"**Measured** by `make bench` on {data['date']} ({where}).{note} Wall seconds of the command, and as a "
            f"multiple of the reference workload (`bench/reference.py`: {ref['mean']:.3f} s in this run, "
            f"{ref['min']:.3f}–{ref['max']:.3f} s) measured just before and after it.")


def readme_part(data: dict) -> str:
    rows = data["rows"]
    lines = [_run_line(data, full=False) + " Every row and how they are taken: [docs/benchmarks.md](docs/benchmarks.md).",
             "",
             "| command | target (2 cores) | wall seconds | x reference | |", "|---|---|---|---|---|"]
    groups = list(GROUPS) + [g for g in dict.fromkeys(r["group"] for r in rows) if g not in GROUPS]
    for g in groups:
        rs = [r for r in rows if r["group"] == g]
        if not rs:
            continue
        targets = list(dict.fromkeys(f"{r['target_seconds']:g}" for r in rs))
        verdicts = {}
        for r in rs:
            v = result(r)
            if v != "met":
                verdicts.setdefault("missed" if v == "timeout" else v, []).append(r["label"])
        verdict = "; ".join(f"{v}: {', '.join(labels)}" for v, labels in verdicts.items()) or "met"
        lines.append(f"| {GROUPS.get(g, g)} | ≤ {' / '.join(targets)} s | {' / '.join(_secs(r) for r in rs)} | "
                     f"{' / '.join(f'{x_reference(r):.0f}' for r in rs)} | {_cell(verdict)} |")
    return "\n".join(lines)


def page_parts(data: dict) -> dict:
    rows = data["rows"]
    lines = ["| row | command | target | wall seconds | CPU seconds | x reference | result | sup\\|b\\| / E*_K | "
             "sup m | gap |", "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        v = result(r)
        if r.get("error"):
            v += f": {r['error']}"
        c = r.get("certificate") or {}
        cert = ([f"{c['bias_over_level']:.4g}", f"{c['sup_m']:.6g}",
                 "" if c.get("gap") is None else f"{c['gap']:.2e}"] if c else ["", "", ""])
        cpu = "" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.1f}"
        lines.append(f"| {r['name']} | `coefgen {' '.join(r['args'])}` | ≤ {r['target_seconds']:g} | "
                     f"{_secs(r)} | {cpu} | {x_reference(r):.1f} | {_cell(v)} | " + " | ".join(cert) + " |")
    return {"targets-run": _run_line(data, full=True), "targets": "\n".join(lines)}


def pages(data: dict) -> dict:
    """{page (relative to the checkout): {section name: text}} for every page with generated sections."""
    return {README: {"measured": readme_part(data)}, BENCH_PAGE: page_parts(data)}


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    pages(data)  # every field the pages need is there (KeyError / TypeError / ValueError otherwise)
    return data


def from_json(a) -> int:
    try:
        data = load(a.from_json)
    except OSError as e:
        print(f"run_all: cannot read {a.from_json}: {e.strerror or e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"run_all: {a.from_json}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as e:
        print(f"run_all: {a.from_json} is not a benchmarks.json (missing or bad {e})", file=sys.stderr)
        return 2
    parts = pages(data)
    if a.markdown:
        text = "\n".join(generated.fragment(COMMAND, p) for p in parts.values())
        if a.markdown == "-":
            sys.stdout.write(text)
        else:
            generated.write_atomic(a.markdown, text)
    if a.update_page:
        for page, p in parts.items():
            path = os.path.join(a.root, page)
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                new = generated.splice(text, COMMAND, p)
                if new != text:
                    generated.write_atomic(path, new)
                    print(f"updated {page}")
            except (OSError, ValueError) as e:
                print(f"run_all: {page}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
                return 2
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-json", default=None, metavar="FILE",
                    help="no run: read a benchmarks.json (docs/benchmarks.json) and render its sections")
    ap.add_argument("--update-page", action="store_true",
                    help=f"with --from-json: replace the generated sections of {README} and {BENCH_PAGE} in place")
    ap.add_argument("--markdown", default=None, metavar="FILE",
                    help="with --from-json: write the generated sections (markers included) to FILE ('-': stdout)")
    ap.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)  # the checkout whose pages --update-page edits
    a = ap.parse_args(argv)
    if a.update_page or a.markdown:
        if not a.from_json:
            ap.error("--update-page / --markdown need --from-json (a benchmarks.json)")
    elif a.from_json:
        ap.error("--from-json needs --update-page or --markdown")
    if a.from_json:
        return from_json(a)
    return run()


if __name__ == "__main__":
    sys.exit(main())
