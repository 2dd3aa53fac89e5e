"""The tables compared, as the trainer runs them (TRL GRPOTrainer, scale_rewards="none": group-mean baseline).

Under the group-mean baseline a K-sample table acts as its first K-1 entries used as a (K-1)-sample
table without baseline (t_K never matters), so each estimator is compared *as the trainer runs it*:

  plugin   coefgen solve -d kl -e plugin  --K K --baseline mean  (t_c = log(c/(K-1)), c < K)
  digamma  coefgen solve -d kl -e digamma --K K --baseline mean  (t_c = psi(c) - psi(K-1), c < K)
  default  coefgen.runtime.default_table("kl", K=K, baseline="mean")  (coefgen's table for this trainer)

For plugin and digamma this is the same experiment as loading the no-baseline K-file
(``coefgen solve -d kl -e plugin --K K``): log(c/K) and psi(c) - psi(K) differ from the entries above
by a constant, and a constant added to every reward leaves every group-mean advantage unchanged.
(coefgen's integration refuses a no-baseline file under this trainer, so the mean files are loaded.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from coefgen import payload as _payload

ARMS = ("plugin", "digamma", "default")
LABELS = {"plugin": "plug-in log(c/K)", "digamma": "digamma", "default": "coefgen default (kl aqp)"}


def _solve(coefgen_bin, estimator, K, out):
    cmd = [str(coefgen_bin), "solve", "-d", "kl", "-e", estimator, "--K", str(K), "--baseline", "mean", "-o", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"e2e: {' '.join(cmd)} failed: {run.stderr.strip()[-500:]}")
    return cmd


def default_table_file(K: int, out: Path) -> dict:
    """coefgen's default kl table for a group-mean trainer at K, written to ``out``."""
    from coefgen import runtime

    payload = runtime.default_table("kl", K=K, baseline="mean").payload
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(_payload.canonical_json(payload), encoding="utf-8")
    tmp.replace(out)
    return {"how": f'coefgen.runtime.default_table("kl", K={K}, baseline="mean")'}


def build_tables(Ks, outdir, coefgen_bin=None, arms=ARMS) -> dict:
    """{arm: {K: info}} with info = path, values, how it was built. ``coefgen_bin`` (the compiler
    venv's coefgen) is needed for plugin/digamma only."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for arm in arms:
        for K in Ks:
            path = outdir / f"{arm}-K{K}.json"
            if arm == "default":
                info = default_table_file(K, path)
            else:
                if coefgen_bin is None:
                    raise ValueError(f"the {arm} table needs the coefgen CLI (the compiler venv's .venv/bin/coefgen)")
                cmd = _solve(coefgen_bin, arm, K, path)
                info = {"how": " ".join(["coefgen"] + cmd[1:-1] + [path.name])}
            payload = json.loads(path.read_text())
            info.update(path=str(path), values=[float(v) for v in payload["values"]], K=K,
                        estimator=payload["estimator"], estimator_params=payload.get("estimator_params"),
                        baseline=payload.get("baseline", "none"), sha256=payload["sha256"])
            out.setdefault(arm, {})[K] = info
    return out
