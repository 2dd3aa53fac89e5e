"""The game study of issue 10: which kl table makes training reach the target (`make study`).

For every candidate table and group size K it measures, with coefgen.game,

* the mean-field equilibrium KL(p*‖q) reached from the uniform policy (DESIGN §10), on the
  issue's target families — Zipf s ∈ {1.1, 1.5, 2} × M ∈ {10, 100}, Dirichlet α ∈ {0.1, 1} ×
  M ∈ {10, 100} (Dirichlet: 32 prompts, seed 0) — and its ratio to the plug-in's;
* the stochastic final KL after 5000 steps (SGD, leave-one-out baseline, 64 prompts, seed 1) at
  the table's best lr ∈ {0.3, 1, 3}, on three targets, at K = 8, 16, 64, 256;
* held-out checks of the shipped default (targets and K never used to choose it);
* the same comparison for alpha:0.5 and alpha:1.5 at K = 8, 32.

Scoped to stay near 10-15 minutes on 2 cores: the stochastic part uses 3 targets and the
candidates named in STOCH_CANDIDATES; at K >= 512 only LARGE_K_CANDIDATES are solved (an aqp
solve takes up to ~1 min there). Mean-field values come from coefgen.game (the limit of the
expected dynamics from the uniform policy, starved answers included: see MeanField.starved).

Writes docs/study_game.json (every number), docs/choosing_a_table.png, and prints the tables
quoted in the README ("Choosing a table").

    python bench/study_game.py [--quick] [--cache DIR]
    python bench/study_game.py --baseline loo,mean [--cache DIR]     # writes docs/study_game_baselines.json
    python bench/study_game.py --from-json docs/study_game_baselines.json --markdown FILE|- [--update-page PAGE]

The last form reads only the JSON and writes the tables of docs/choosing-a-table.md "Under the trainer's
baseline" as Markdown, each between marker comments (--update-page replaces them in the page in place;
tests/test_study_fragment.py checks the page against the committed JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import generated  # noqa: E402  (bench/generated.py: the marker comments, splicing, atomic writes)

from coefgen import game  # noqa: E402
from coefgen.compiler import compile_table, normalize_params  # noqa: E402
from coefgen.errors import CheckError, InputError  # noqa: E402
from coefgen.spec import load_spec  # noqa: E402

KS = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
TARGETS = ["zipf:1.1:10", "zipf:1.5:10", "zipf:2:10", "zipf:1.1:100", "zipf:1.5:100", "zipf:2:100",
           "dirichlet:0.1:10", "dirichlet:1:10", "dirichlet:0.1:100", "dirichlet:1:100"]
HELD_OUT_TARGETS = ["zipf:1.3:30", "dirichlet:0.3:50", "zipf:1.8:200", "dirichlet:0.5:20"]
HELD_OUT_KS = [12, 24, 48, 100, 384]
STOCH_KS = [8, 16, 64, 256]
STOCH_TARGETS = ["zipf:1.1:10", "zipf:1.5:100", "dirichlet:1:10"]
LRS = [0.3, 1.0, 3.0]
STEPS = 5000
P_MEAN_FIELD = 32
P_STOCH = 64

# candidates: name -> (estimator, params)
CANDIDATES = {
    "plugin": ("plugin", {}),
    "digamma": ("digamma", {}),
    "minimax": ("minimax", {}),
    "aqp tau=1.5": ("aqp", {"tau": 1.5}),
    "aqp tau=3": ("aqp", {"tau": 3}),
    "aqp tau=10": ("aqp", {"tau": 10}),
    "aqp max_mse=plugin": ("aqp", {"max_mse": "plugin"}),
    "aqp max_mse=2plugin": ("aqp", {"max_mse": "2plugin"}),
    "aqp max_mse=10plugin": ("aqp", {"max_mse": "10plugin"}),
    "aqp max_mse=4plugin": ("aqp", {"max_mse": "4plugin"}),
    "aqp max_mse=4plugin gamma=0.75": ("aqp", {"max_mse": "4plugin", "gamma": 0.75}),
    "aqp max_mse=4plugin gamma=0.5": ("aqp", {"max_mse": "4plugin", "gamma": 0.5}),
    "aqp max_mse=10plugin gamma=0.5": ("aqp", {"max_mse": "10plugin", "gamma": 0.5}),
    "aqp max_mse=4plugin monotone": ("aqp", {"max_mse": "4plugin", "monotone": True}),
}
STOCH_CANDIDATES = ["plugin", "digamma", "minimax", "aqp tau=1.5", "aqp tau=10", "aqp max_mse=plugin",
                    "aqp max_mse=2plugin", "aqp max_mse=10plugin", "aqp max_mse=4plugin",
                    "aqp max_mse=4plugin gamma=0.75", "default"]
LARGE_K_CANDIDATES = ["plugin", "digamma", "aqp max_mse=plugin", "aqp max_mse=4plugin", "aqp max_mse=4plugin gamma=0.75",
                      "default"]


def default_entry(K: int, divergence: str = "kl"):
    """(estimator, params) of the embedded default set's table for divergence at K (aqp preferred)."""
    found = []
    for req in load_spec(None).tables:
        if req.divergence == divergence and req.K == K:
            found.append((req.estimator, {k: v for k, v in req.params.items() if v is not None}))
    for est, prm in found:
        if est == "aqp":
            return est, prm
    return found[0] if found else None


def label(est, prm) -> str:
    from coefgen.compiler import key_params

    user = key_params(est, normalize_params(est, prm))
    return est + "".join(f" {k}={v}" for k, v in sorted(user.items()))


class Tables:
    """Solve (and cache) tables; None when the estimator refuses (e.g. tau too tight in float64)."""

    def __init__(self, cache: str | None):
        self.cache = cache
        self.mem = {}
        self.solve_seconds = {}

    def get(self, divergence, K, est, prm):
        key = (divergence, K, label(est, prm))
        if key in self.mem:
            return self.mem[key]
        path = None
        if self.cache:
            os.makedirs(self.cache, exist_ok=True)
            path = os.path.join(self.cache, f"{divergence.replace(':', '')}-{label(est, prm).replace(' ', '_')}-K{K}.json")
            if os.path.exists(path):
                with open(path) as f:
                    v = json.load(f)
                self.mem[key] = None if v is None else np.array(v)
                return self.mem[key]
        t0 = time.perf_counter()
        try:
            vals = np.array(compile_table(divergence, K, est, prm)["values"])
        except (CheckError, InputError) as e:
            print(f"  [{divergence} K={K} {label(est, prm)}: refused: {str(e)[:90]}]", flush=True)
            vals = None
        self.solve_seconds[key] = time.perf_counter() - t0
        if path:
            with open(path, "w") as f:
                json.dump(None if vals is None else [float(x) for x in vals], f)
        self.mem[key] = vals
        return vals


def candidates_at(K: int, divergence: str = "kl"):
    out = {}
    d = default_entry(K, divergence)
    for name, (est, prm) in CANDIDATES.items():
        if K >= 512 and name not in LARGE_K_CANDIDATES:
            continue
        if est == "minimax" and K > 24:
            continue  # float64 does not hold the minimax guarantee above K = 24 (README)
        if est == "aqp" and "tau" in prm and prm["tau"] < 10 and K > 32:
            continue  # refused in float64 (entries too large), checked at K <= 32
        if est == "digamma" and divergence != "kl":
            continue
        out[name] = (est, prm)
    if d is not None:
        out["default"] = d
    return out


def mean_field_kl(values, q, divergence="kl"):
    """Mean-field KL(p*‖q) from coefgen.game (the flow's limit from the uniform policy) and whether
    the engine reports convergence."""
    r = game.mean_field_equilibrium(values, q, reward=divergence)
    return float(np.mean(r.kl)), bool(np.all(r.converged))


def best_final(values, q, divergence="kl", baseline="loo", lrs=None):
    res = {}
    for lr in (lrs or LRS):
        run = game.stochastic_run(values, q, steps=STEPS, lr=lr, baseline=baseline, optimizer="sgd", seed=1,
                                  reward=divergence, record=[STEPS])
        res[lr] = float(np.mean(run.final_kl))
    lr = min(res, key=res.get)
    return res[lr], lr, res


def study(quick: bool, cache: str | None):
    tabs = Tables(cache)
    Ks = [8, 16, 64] if quick else KS
    Qmf = {s: game.make_targets(s, 1 if s.startswith("zipf") else P_MEAN_FIELD, 0)
           for s in TARGETS + HELD_OUT_TARGETS}
    out = {"mean_field": {}, "stochastic": {}, "held_out": {}, "alpha": {}, "defaults": {}, "protocol": {
        "targets": TARGETS, "prompts_mean_field": P_MEAN_FIELD, "stochastic_targets": STOCH_TARGETS,
        "prompts_stochastic": P_STOCH, "steps": STEPS, "lrs": LRS, "baseline": "loo", "optimizer": "sgd"}}
    t_start = time.perf_counter()
    for K in Ks:
        cands = candidates_at(K)
        out["defaults"][K] = label(*cands["default"]) if "default" in cands else None
        row = {}
        for name, (est, prm) in cands.items():
            t = tabs.get("kl", K, est, prm)
            if t is None:
                continue
            kls, conv = {}, True
            for s in TARGETS:
                kls[s], c = mean_field_kl(t, Qmf[s])
                conv &= c
            row[name] = {"kl": kls, "converged": conv, "monotone": bool(np.all(np.diff(t) >= 0)),
                         "max_abs": float(np.max(np.abs(t)))}
        base = row["plugin"]["kl"]
        for name, r in row.items():
            r["ratio"] = {s: r["kl"][s] / base[s] for s in TARGETS}
            r["max_ratio"] = max(r["ratio"].values())
        out["mean_field"][K] = row
        print(f"K={K}: mean field done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    Qst = {s: game.make_targets(s, P_STOCH, 0) for s in STOCH_TARGETS}
    for K in ([16, 64] if quick else STOCH_KS):
        cands = candidates_at(K)
        row = {}
        for name in STOCH_CANDIDATES:
            if name not in cands:
                continue
            t = tabs.get("kl", K, *cands[name])
            if t is None:
                continue
            row[name] = {}
            for s in STOCH_TARGETS:
                best, lr, allr = best_final(t, Qst[s])
                row[name][s] = {"final_kl": best, "best_lr": lr, "by_lr": allr}
        for s in STOCH_TARGETS:
            b = min(r[s]["final_kl"] for r in row.values())
            for r in row.values():
                r[s]["rel_best"] = r[s]["final_kl"] / b
        out["stochastic"][K] = row
        print(f"K={K}: stochastic done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    fam = default_entry(64)  # the default family, solved at held-out K that the set does not ship
    for K in ([12, 48] if quick else HELD_OUT_KS):
        d = fam
        row = {}
        for name, (est, prm) in {"plugin": ("plugin", {}), "digamma": ("digamma", {}), "default-family": d}.items():
            t = tabs.get("kl", K, est, prm)
            if t is None:
                continue
            row[name] = {s: mean_field_kl(t, Qmf[s])[0] for s in TARGETS + HELD_OUT_TARGETS}
        row["default-family"]["label"] = label(*d)
        out["held_out"][K] = row
    print(f"held-out done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    for div in ("alpha:0.5", "alpha:1.5"):
        out["alpha"][div] = {}
        for K in (8, 32):
            cands = {"plugin": ("plugin", {}), "aqp tau=10": ("aqp", {"tau": 10}),
                     "aqp max_mse=plugin": ("aqp", {"max_mse": "plugin"}),
                     "aqp max_mse=4plugin": ("aqp", {"max_mse": "4plugin"})}
            d = default_entry(K, div)
            if d is not None:
                cands["default"] = d
            row = {}
            for name, (est, prm) in cands.items():
                t = tabs.get(div, K, est, prm)
                if t is None:
                    continue
                row[name] = {"kl": {s: mean_field_kl(t, Qmf[s], div)[0] for s in TARGETS}}
                best, lr, _ = best_final(t, Qst["dirichlet:1:10"], div)
                row[name]["final_kl_dirichlet:1:10"] = best
                row[name]["best_lr"] = lr
            base = row["plugin"]["kl"]
            for r in row.values():
                r["max_ratio"] = max(r["kl"][s] / base[s] for s in TARGETS)
            out["alpha"][div][K] = row
    out["seconds"] = time.perf_counter() - t_start
    return out


# ------------------------------------------------------------------ under the trainer's baseline (issue 16)

BASELINE_KS = [4, 8, 16, 32, 64, 128, 256]
BASELINE_STOCH_KS = [8, 16, 64]
BASELINE_STOCH_CANDIDATES = {
    "loo": ["plugin", "digamma", "aqp max_mse=2plugin", "aqp max_mse=4plugin", "aqp max_mse=10plugin",
            "aqp max_mse=4plugin gamma=0.75"],
    "mean": ["plugin", "aqp max_mse=4plugin gamma=0.75"],
}
BASELINE_LARGE_K = ["plugin", "digamma", "aqp max_mse=plugin", "aqp max_mse=2plugin", "aqp max_mse=4plugin",
                    "aqp max_mse=10plugin", "aqp max_mse=4plugin gamma=0.75", "aqp max_mse=4plugin monotone"]
LOO_DEFAULT = "aqp max_mse=4plugin gamma=0.75"    # the default loo/mean table at K: this solved at K - 1, padded
NONE_MISUSED = "none default (K-table)"           # the no-baseline default K-table used under the baseline
GRPO_KS = [8, 16, 64]
GRPO_LRS = [0.1, 0.3, 1.0, 3.0]
GRPO_TAIL_FROM = STEPS // 2


def padded(values):
    """The loo/mean table at K from the no-baseline solution at K - 1: t_K = t_{K-1}."""
    return np.append(values, values[-1])


def mean_field_under(values, q, baseline, divergence="kl"):
    r = game.mean_field_equilibrium(values, q, reward=divergence, baseline=baseline)
    return float(np.mean(r.kl)), bool(np.all(r.converged))


def study_baselines(baselines, quick: bool, cache: str | None):
    """The default loo/mean tables (aqp max_mse=4plugin gamma=0.75 solved at K-1, padded) under LOO/mean.

    Mean field: under LOO and under the group mean (a factor (K-1)/K on the step) the stationary
    points of a K-table are those of its first K-1 entries as a (K-1)-table without baseline, so a
    padded K-1 solution is evaluated by its none equilibrium at K-1 (the identity is re-checked
    through the engine at a few K). Stochastic: the runs use the K-table under the baseline itself."""
    tabs = Tables(cache)
    Ks = [8, 16] if quick else BASELINE_KS
    stoch_Ks = [8, 16] if quick else BASELINE_STOCH_KS
    grpo_Ks = [8] if quick else GRPO_KS
    Qmf = {s: game.make_targets(s, 1 if s.startswith("zipf") else P_MEAN_FIELD, 0) for s in TARGETS}
    Qst = {s: game.make_targets(s, P_STOCH, 0) for s in STOCH_TARGETS}
    out = {"protocol": {
        "baselines": baselines, "targets": TARGETS, "prompts_mean_field": P_MEAN_FIELD, "Ks": Ks,
        "stochastic_targets": STOCH_TARGETS, "prompts_stochastic": P_STOCH, "steps": STEPS, "lrs": LRS,
        "stochastic_Ks": stoch_Ks, "stochastic_candidates": {b: BASELINE_STOCH_CANDIDATES[b] for b in baselines},
        "grpo_Ks": grpo_Ks, "grpo_lrs": GRPO_LRS, "grpo_tail_from": GRPO_TAIL_FROM, "optimizer": "sgd",
        "loo_default": LOO_DEFAULT + " solved at K-1, t_K = t_{K-1}",
        "note": "mean field of a loo/mean K-table = none mean field of its (K-1)-table (exact identity)"},
        "mean_field": {}, "none_beside": {}, "identity_check": {}, "stochastic": {b: {} for b in baselines},
        "grpo": {}}
    t_start = time.perf_counter()
    for K in Ks:
        row = {}
        for name, (est, prm) in candidates_at(K - 1).items():
            if name == "default" or (K >= 128 and name not in BASELINE_LARGE_K):
                continue
            t = tabs.get("kl", K - 1, est, prm)
            if t is None:
                continue
            kls, conv = {}, True
            for s in TARGETS:
                kls[s], c = mean_field_kl(t, Qmf[s])
                conv &= c
            row[name] = {"kl": kls, "converged": conv}
        tn = tabs.get("kl", K, *default_entry(K))
        kls, conv = {}, True
        for s in TARGETS:
            kls[s], c = mean_field_under(tn, Qmf[s], "loo")
            conv &= c
        row[NONE_MISUSED] = {"kl": kls, "converged": conv, "label": label(*default_entry(K))}
        base = row["plugin"]["kl"]
        for r in row.values():
            r["ratio"] = {s: r["kl"][s] / base[s] for s in TARGETS}
            r["max_ratio"] = max(r["ratio"].values())
        out["mean_field"][K] = row
        # the none numbers beside: the none default K-table and the plug-in at K without baseline
        nb = {}
        for name, (est, prm) in (("plugin", ("plugin", {})), ("default", default_entry(K))):
            t = tabs.get("kl", K, est, prm)
            nb[name] = {s: mean_field_kl(t, Qmf[s])[0] for s in TARGETS}
        nb["max_ratio_default"] = max(nb["default"][s] / nb["plugin"][s] for s in TARGETS)
        out["none_beside"][K] = nb
        if K in (4, 16, 64):   # the identity through the engine itself: padded K-table under loo/mean
            t = tabs.get("kl", K - 1, *CANDIDATES[LOO_DEFAULT])
            diffs = []
            for b in ("loo", "mean"):
                for s in TARGETS:
                    diffs.append(abs(mean_field_under(padded(t), Qmf[s], b)[0] - row[LOO_DEFAULT]["kl"][s]))
            out["identity_check"][K] = max(diffs)
        print(f"[{baselines}] K={K}: mean field done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    for b in baselines:
        for K in stoch_Ks:
            row = {}
            names = list(BASELINE_STOCH_CANDIDATES[b]) + [NONE_MISUSED]
            for name in names:
                if name == NONE_MISUSED:
                    vals = tabs.get("kl", K, *default_entry(K))
                else:
                    t = tabs.get("kl", K - 1, *CANDIDATES[name])
                    vals = None if t is None else padded(t)
                if vals is None:
                    continue
                row[name] = {}
                for s in STOCH_TARGETS:
                    best, lr, allr = best_final(vals, Qst[s], baseline=b)
                    row[name][s] = {"final_kl": best, "best_lr": lr, "by_lr": allr}
            for s in STOCH_TARGETS:
                m = min(r[s]["final_kl"] for r in row.values())
                for r in row.values():
                    r[s]["rel_best"] = r[s]["final_kl"] / m
            out["stochastic"][b][K] = row
            print(f"[{b}] K={K}: stochastic done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    # GRPO's std normalisation on the default mean table (mean vs grpo, same table, same seeds)
    for K in grpo_Ks:
        vals = padded(tabs.get("kl", K - 1, *CANDIDATES[LOO_DEFAULT]))
        row = {}
        for s in STOCH_TARGETS:
            cell = {"mean_field_mean": mean_field_under(vals, Qst[s], "mean")[0]}
            for b in ("mean", "grpo"):
                by_lr, tail = {}, {}
                for lr in GRPO_LRS:
                    run = game.stochastic_run(vals, Qst[s], steps=STEPS, lr=lr, baseline=b, optimizer="sgd", seed=1,
                                              record=list(range(GRPO_TAIL_FROM, STEPS + 1, 50)))
                    by_lr[lr] = float(run.kl_mean[-1])
                    tail[lr] = float(np.mean(run.kl_mean))
                best = min(by_lr, key=by_lr.get)
                cell[b] = {"by_lr": by_lr, "tail_mean_by_lr": tail, "best_lr": best, "final_kl": by_lr[best]}
            row[s] = cell
        out["grpo"][K] = row
        print(f"[grpo] K={K} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    out["seconds"] = time.perf_counter() - t_start
    out["solve_seconds"] = sum(tabs.solve_seconds.values())
    return out


def plot_baselines(out, path):
    """Left: mean-field worst ratio to the plug-in under LOO/mean (candidates solved at K-1); right: GRPO's
    final KL over the group mean's (same default table, same seeds) per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mf, nb = out["mean_field"], out["none_beside"]
    Ks = sorted(mf)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    for n in ["plugin", "digamma", "aqp max_mse=2plugin", "aqp max_mse=10plugin", "aqp max_mse=4plugin",
              LOO_DEFAULT, NONE_MISUSED]:
        ks = [K for K in Ks if n in mf[K]]
        lab = "loo/mean default (" + n + ", at K-1)" if n == LOO_DEFAULT else n
        ax.plot(ks, [mf[K][n]["max_ratio"] for K in ks], marker="o", ms=3, lw=2.2 if n == LOO_DEFAULT else 1.2,
                color="black" if n == LOO_DEFAULT else None, label=lab)
    ax.plot(Ks, [nb[K]["max_ratio_default"] for K in Ks], "k--", lw=0.9, label="no baseline: default K-table")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("equilibrium KL / plug-in's (worst target)")
    ax.set_title("mean field under LOO / group mean", fontsize=10)
    ax.legend(fontsize=6.5)
    ax = axes[1]
    g = out["grpo"]
    gk = sorted(g)
    for s in STOCH_TARGETS:
        ax.plot(gk, [g[K][s]["grpo"]["final_kl"] / g[K][s]["mean"]["final_kl"] for K in gk], marker="o", ms=3, label=s)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K")
    ax.set_ylabel("final KL: grpo / group mean (best lr)")
    ax.set_title("GRPO's std normalisation, default mean table", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def report_baselines(out) -> str:
    lines = []
    mf = out["mean_field"]
    names = []
    for K in mf:
        for n in mf[K]:
            if n not in names:
                names.append(n)
    lines.append("Under LOO / group mean: mean-field equilibrium, worst ratio KL(p*||q) / the plug-in's (plug-in at K-1, "
                 "padded) over the 10 target families; candidates solved at K-1 and padded")
    lines.append("| table | " + " | ".join(f"K={K}" for K in mf) + " |")
    lines.append("|---|" + "---|" * len(mf))
    for n in names:
        cells = [f"{mf[K][n]['max_ratio']:.3g}" if n in mf[K] else "—" for K in mf]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    nb = out["none_beside"]
    lines.append("| (none: default K-table without baseline, ratio to the plug-in at K) | " + " | ".join(
        f"{nb[K]['max_ratio_default']:.3g}" for K in mf) + " |")
    lines.append("")
    lines.append("Equilibrium KL per target: loo default (K-1 solution padded) / none default K-table under LOO / "
                 "none default without baseline")
    for K in mf:
        lines.append(f"K={K}: " + "; ".join(
            f"{s} {mf[K][LOO_DEFAULT]['kl'][s]:.3g}/{mf[K][NONE_MISUSED]['kl'][s]:.3g}/{nb[K]['default'][s]:.3g}"
            for s in TARGETS))
    lines.append("")
    lines.append("identity check (padded K-1 table under loo/mean through the engine vs none at K-1), max |diff|: " +
                 ", ".join(f"K={K}: {v:.1e}" for K, v in out["identity_check"].items()))
    for b, st in out["stochastic"].items():
        lines.append("")
        lines.append(f"Stochastic under {b}: final KL after {out['protocol']['steps']} steps at best lr "
                     f"(ratio to the best candidate)")
        for K, row in st.items():
            lines.append(f"K={K}")
            lines.append("| table | " + " | ".join(STOCH_TARGETS) + " |")
            lines.append("|---|" + "---|" * len(STOCH_TARGETS))
            for n, r in row.items():
                lines.append(f"| {n} | " + " | ".join(
                    f"{r[s]['final_kl']:.3g} (x{r[s]['rel_best']:.2f}, lr {r[s]['best_lr']:g})" for s in STOCH_TARGETS)
                    + " |")
    lines.append("")
    lines.append("GRPO std normalisation, default mean table: final KL at best lr, mean baseline vs grpo; "
                 "tail mean (steps >= %d) at lr 0.1; mean-field KL (mean)" % out["protocol"]["grpo_tail_from"])
    lines.append("| K | target | mean: final (lr) | grpo: final (lr) | mean: tail lr 0.1 | grpo: tail lr 0.1 | eq. (mean) |")
    lines.append("|---|---|---|---|---|---|---|")
    for K, row in out["grpo"].items():
        for s, c in row.items():
            lines.append(f"| {K} | {s} | {c['mean']['final_kl']:.3g} ({c['mean']['best_lr']:g}) | "
                         f"{c['grpo']['final_kl']:.3g} ({c['grpo']['best_lr']:g}) | "
                         f"{c['mean']['tail_mean_by_lr'][0.1]:.3g} | {c['grpo']['tail_mean_by_lr'][0.1]:.3g} | "
                         f"{c['mean_field_mean']:.3g} |")
    lines.append(f"\ncompute: {out['seconds']:.0f} s (solves {out['solve_seconds']:.0f} s)")
    return "\n".join(lines)


# ------------------------------------------------------------------ the baseline section's tables, generated

MARKDOWN_SOURCE = "docs/study_game_baselines.json"
MARKDOWN_COMMAND = f"bench/study_game.py --from-json {MARKDOWN_SOURCE} --markdown"
MARKDOWN_ROWS_EQ_TARGETS = ["zipf:1.1:10", "zipf:1.5:10", "zipf:1.5:100", "dirichlet:1:10", "dirichlet:1:100"]
MARKDOWN_EQ_KS = [4, 8, 16, 64, 256]


def _marker_open(name: str) -> str:
    return generated.marker_open(MARKDOWN_COMMAND, name)


def _marker_close(name: str) -> str:
    return generated.marker_close(name)


def markdown_parts(out) -> dict:
    """The tables of docs/choosing-a-table.md "Under the trainer's baseline", from a study_game_baselines.json
    (read with _int_keys(_float_keys(...))) alone: {part name: Markdown text, markers excluded}."""
    g = lambda x: f"{x:.3g}"  # noqa: E731
    parts = {}
    mf, nb, proto = out["mean_field"], out["none_beside"], out["protocol"]
    Ks = sorted(mf)
    idc = out["identity_check"]
    parts["run"] = (
        f"Recorded in the JSON: {out['seconds']:.0f} s for the whole run ({out['solve_seconds']:.0f} s of it solving "
        f"tables not yet in the cache); the identity re-checked through the engine under `loo` and `mean` at "
        f"K = {', '.join(str(K) for K in sorted(idc))}: largest difference {max(idc.values()):.1e}.")
    names = [n for n in CANDIDATES if any(n in mf[K] for K in Ks)]
    names += [n for K in Ks for n in mf[K] if n not in names and n != NONE_MISUSED]
    names = list(dict.fromkeys(names))
    lines = ["| table (solved at K − 1) | " + " | ".join(f"K={K}" for K in Ks) + " |", "|---|" + "---|" * len(Ks)]
    for n in names:
        cells = [g(mf[K][n]["max_ratio"]) if n in mf[K] else "—" for K in Ks]
        if n == LOO_DEFAULT:
            lines.append(f"| **{n} (the `loo`/`mean` default)** | " + " | ".join(f"**{c}**" for c in cells) + " |")
        else:
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| no-baseline default K-table, under LOO | " + " | ".join(
        g(mf[K][NONE_MISUSED]["max_ratio"]) if NONE_MISUSED in mf[K] else "—" for K in Ks) + " |")
    lines.append("| *no baseline: default K-table / plug-in at K* | " + " | ".join(
        f"*{g(nb[K]['max_ratio_default'])}*" for K in Ks) + " |")
    parts["mean-field"] = "\n".join(lines)
    eks = [K for K in MARKDOWN_EQ_KS if K in mf]
    lines = ["| K | " + " | ".join(MARKDOWN_ROWS_EQ_TARGETS) + " |", "|---|" + "---|" * len(MARKDOWN_ROWS_EQ_TARGETS)]
    for K in eks:
        lines.append(f"| {K} | " + " | ".join(
            f"{g(mf[K][LOO_DEFAULT]['kl'][s])} / {g(mf[K][NONE_MISUSED]['kl'][s])} / {g(nb[K]['default'][s])}"
            for s in MARKDOWN_ROWS_EQ_TARGETS) + " |")
    parts["equilibrium-kl"] = "\n".join(lines)
    st = out["stochastic"]
    targets = proto["stochastic_targets"]
    if "loo" in st:
        sks = sorted(st["loo"])
        names = list(proto["stochastic_candidates"]["loo"]) + [NONE_MISUSED]
        lines = ["| under LOO, table (solved at K − 1) | " + " | ".join(f"K={K}" for K in sks) + " |",
                 "|---|" + "---|" * len(sks)]
        for n in names:
            cells = [f"{max(st['loo'][K][n][s]['rel_best'] for s in targets):.2f}" if n in st["loo"][K] else "—"
                     for K in sks]
            if n == LOO_DEFAULT:
                lines.append(f"| **{n}** | " + " | ".join(f"**{c}**" for c in cells) + " |")
            elif n == NONE_MISUSED:
                lines.append("| no-baseline default K-table, under LOO | " + " | ".join(cells) + " |")
            else:
                lines.append(f"| {n} | " + " | ".join(cells) + " |")
        parts["stochastic-ratio"] = "\n".join(lines)
    lines = ["| K | baseline | " + " | ".join(targets) + " |", "|---|---|" + "---|" * len(targets)]
    for K in sorted({K for b in st for K in st[b]}):
        for b in st:
            row = st[b].get(K, {})
            if LOO_DEFAULT not in row:
                continue
            lines.append(f"| {K} | {b} | " + " | ".join(
                f"{g(row[LOO_DEFAULT][s]['final_kl'])} ({g(row['plugin'][s]['final_kl'])})" for s in targets) + " |")
    parts["stochastic-absolute"] = "\n".join(lines)
    tail = proto["grpo_lrs"][0]
    lines = ["| K | target | mean: final KL (lr) | grpo: final KL (lr) | grpo / mean | mean: tail | grpo: tail | "
             "eq. (mean) |", "|---|---|---|---|---|---|---|---|"]
    for K in sorted(out["grpo"]):
        for s in targets:
            c = out["grpo"][K][s]
            m, r = c["mean"], c["grpo"]
            lines.append(f"| {K} | {s} | {g(m['final_kl'])} ({m['best_lr']:g}) | {g(r['final_kl'])} ({r['best_lr']:g}) | "
                         f"{r['final_kl'] / m['final_kl']:.2f} | {g(m['tail_mean_by_lr'][tail])} | "
                         f"{g(r['tail_mean_by_lr'][tail])} | {g(c['mean_field_mean'])} |")
    parts["grpo"] = "\n".join(lines)
    return parts


def markdown_fragment(parts: dict) -> str:
    """Every part wrapped in its marker comments, as it stands in the page."""
    return generated.fragment(MARKDOWN_COMMAND, parts)


def splice_markdown(page: str, parts: dict) -> str:
    """page with the text between each part's markers replaced by the part; ValueError if a part's markers are
    missing, duplicated or out of order."""
    return generated.splice(page, MARKDOWN_COMMAND, parts)


_write_atomic = generated.write_atomic


def report(out) -> str:
    lines = []
    mf = out["mean_field"]
    names = []
    for K in mf:
        for n in mf[K]:
            if n not in names:
                names.append(n)
    lines.append("Mean-field equilibrium: worst ratio KL(p*||q) / plug-in's over the 10 target families")
    lines.append("| table | " + " | ".join(f"K={K}" for K in mf) + " |")
    lines.append("|---|" + "---|" * len(mf))
    for n in names:
        cells = [f"{mf[K][n]['max_ratio']:.3g}" if n in mf[K] else "—" for K in mf]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("default per K: " + ", ".join(f"{K}: {v}" for K, v in out["defaults"].items()))
    lines.append("")
    lines.append("Mean-field KL of plug-in / digamma / default per target")
    for K in mf:
        lines.append(f"K={K}: " + "; ".join(
            f"{s} {mf[K]['plugin']['kl'][s]:.3g}/{mf[K]['digamma']['kl'][s]:.3g}/"
            f"{mf[K]['default']['kl'][s]:.3g}" if 'default' in mf[K] else s for s in TARGETS))
    lines.append("")
    st = out["stochastic"]
    lines.append("Stochastic: final KL after 5000 steps at best lr (ratio to the best candidate)")
    for K in st:
        lines.append(f"K={K}")
        lines.append("| table | " + " | ".join(STOCH_TARGETS) + " |")
        lines.append("|---|" + "---|" * len(STOCH_TARGETS))
        for n, r in st[K].items():
            lines.append(f"| {n} | " + " | ".join(
                f"{r[s]['final_kl']:.3g} (x{r[s]['rel_best']:.2f}, lr {r[s]['best_lr']:g})" for s in STOCH_TARGETS) + " |")
    lines.append("")
    lines.append("Held out (default vs plug-in): worst ratio over targets, and per target")
    for K, row in out["held_out"].items():
        ts = [s for s in row["plugin"]]
        ratio = {s: row["default-family"][s] / row["plugin"][s] for s in ts}
        lines.append(f"K={K} ({row['default-family']['label']}): max ratio {max(ratio.values()):.3g}; " + "; ".join(
            f"{s} {ratio[s]:.3g}" for s in ts))
    lines.append("")
    for div, rows in out["alpha"].items():
        for K, row in rows.items():
            lines.append(f"{div} K={K}: " + "; ".join(
                f"{n}: mf max ratio {r['max_ratio']:.3g}, final KL {r['final_kl_dirichlet:1:10']:.3g}" for n, r in row.items()))
    lines.append(f"\ncompute: {out['seconds']:.0f} s")
    return "\n".join(lines)


def plot(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mf = out["mean_field"]
    order = list(CANDIDATES) + ["default"]
    cmap = plt.get_cmap("tab20")

    def color(n):
        return "black" if n == "default" else cmap(order.index(n) % 20) if n in order else None

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    show = ["plugin", "digamma", "minimax", "aqp tau=10", "aqp max_mse=plugin", "aqp max_mse=10plugin",
            "aqp max_mse=4plugin gamma=0.75", "default"]
    for n in show:
        ks = [K for K in mf if n in mf[K]]
        if not ks:
            continue
        ax.plot(ks, [mf[K][n]["max_ratio"] for K in ks], marker="o", ms=3, lw=2.2 if n == "default" else 1.2,
                label=n, color=color(n))
    ks = list(mf)
    kb = [K for K in ks if K >= 8]
    ax.plot(kb, [0.5 if K <= 8 else 0.25 if K <= 16 else 0.1 for K in kb], "k--", lw=0.8, label="issue's bar")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("equilibrium KL / plug-in's (worst target)")
    ax.set_title("mean field", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1]
    st = out["stochastic"]
    names = []
    for K in st:
        for n in st[K]:
            if n not in names:
                names.append(n)
    names.sort(key=lambda n: order.index(n) if n in order else 99)
    for n in names:
        ks = [K for K in st if n in st[K]]
        ax.plot(ks, [max(st[K][n][s]["rel_best"] for s in STOCH_TARGETS) for K in ks], marker="o", ms=3,
                lw=2.2 if n == "default" else 1.2, label=n, color=color(n))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("final KL / best table's (worst target)")
    ax.set_title("5000 SGD steps, best lr", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _int_keys(x):
    """JSON turns the K keys into strings: turn them back (recursively)."""
    if isinstance(x, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in x.items()}
    return x


def _float_keys(x):
    """JSON turns the lr keys into strings: turn them back (recursively)."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            try:
                k2 = float(k) if isinstance(k, str) and "." in k else k
            except ValueError:
                k2 = k
            out[k2] = _float_keys(v)
        return out
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few K only (smoke run)")
    ap.add_argument("--cache", default=None, help="directory to cache solved tables in")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where to write study_game.json and the plot")
    ap.add_argument("--from-json", default=None, help="re-plot and re-print a previous run's study_game.json")
    ap.add_argument("--baseline", default="none",
                    help="none (the original study) or loo / mean / loo,mean: the default loo/mean tables under the "
                         "trainer's baseline, with GRPO's std normalisation; writes study_game_baselines.json")
    ap.add_argument("--markdown", default=None, metavar="FILE",
                    help="with --from-json study_game_baselines.json: write the tables of docs/choosing-a-table.md "
                         "\"Under the trainer's baseline\" (each between its marker comments) to FILE ('-': stdout); "
                         "reads only the JSON")
    ap.add_argument("--update-page", default=None, metavar="PAGE",
                    help="with --from-json study_game_baselines.json: replace the generated tables in PAGE in place")
    a = ap.parse_args(argv)
    if a.markdown or a.update_page:
        if not a.from_json:
            ap.error("--markdown / --update-page need --from-json (a study_game_baselines.json)")
        try:
            with open(a.from_json) as f:
                out = _int_keys(_float_keys(json.load(f)))
            parts = markdown_parts(out)
        except (OSError, ValueError) as e:
            print(f"study_game: cannot read {a.from_json}: {e}", file=sys.stderr)
            return 2
        except (KeyError, TypeError, AttributeError) as e:
            print(f"study_game: {a.from_json} is not a study_game_baselines.json (missing {e})", file=sys.stderr)
            return 2
        if a.markdown == "-":
            sys.stdout.write(markdown_fragment(parts))
        elif a.markdown:
            _write_atomic(a.markdown, markdown_fragment(parts))
        if a.update_page:
            try:
                with open(a.update_page, encoding="utf-8") as f:
                    page = f.read()
                _write_atomic(a.update_page, splice_markdown(page, parts))
            except (OSError, ValueError) as e:
                print(f"study_game: {a.update_page}: {e}", file=sys.stderr)
                return 2
        return 0
    if a.baseline != "none":
        bs = [b.strip() for b in a.baseline.split(",")]
        if not bs or any(b not in ("loo", "mean") for b in bs):
            ap.error("--baseline: none, or loo / mean / loo,mean")
        if a.from_json:
            with open(a.from_json) as f:
                out = _int_keys(_float_keys(json.load(f)))
        else:
            out = study_baselines(bs, a.quick, a.cache)
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "study_game_baselines.json"), "w") as f:
            json.dump(out, f, indent=1, sort_keys=True, default=str)
            f.write("\n")
        plot_baselines(out, os.path.join(a.out, "choosing_a_table_baselines.png"))
        print(report_baselines(out))
        return 0
    if a.from_json:
        with open(a.from_json) as f:
            out = _int_keys(json.load(f))
    else:
        out = study(a.quick, a.cache)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "study_game.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    plot(out, os.path.join(a.out, "choosing_a_table.png"))
    print(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
