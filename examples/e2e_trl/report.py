"""Phase 3 (compiler venv): aggregate the runs; write the JSON, the plot and the docs' results section.

    python examples/e2e_trl/report.py WORKDIR [--out docs/e2e] [--docs docs/e2e.md] [--wall SECONDS]

writes <out>.json (every number), <out>.png (KL against step, a curve per table with its 95% band;
the trainer beside the game), WORKDIR/results.md (the Markdown results), and replaces the part of
``--docs`` between the markers <!-- e2e:results:begin --> and <!-- e2e:results:end --> with it.

Confidence intervals: 95%, Student t over seeds (each seed: its own initial model and sampling,
shared by the three tables: the comparison between tables is paired).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from tables import LABELS  # noqa: E402

BEGIN, END = "<!-- e2e:results:begin -->", "<!-- e2e:results:end -->"
SCHEMA = "coefgen.e2e/1"


def ci(x) -> dict:
    """Mean and 95% Student-t interval over seeds."""
    from scipy.stats import t as student

    x = np.asarray(x, dtype=float)
    n = x.size
    m = float(np.mean(x))
    if n < 2:
        return {"mean": m, "lo": None, "hi": None, "n": n}
    h = float(student.ppf(0.975, n - 1) * np.std(x, ddof=1) / math.sqrt(n))
    return {"mean": m, "lo": m - h, "hi": m + h, "n": n}


def ci_curve(curves) -> dict:
    c = np.asarray(curves, dtype=float)  # (seeds, steps)
    out = [ci(c[:, j]) for j in range(c.shape[1])]
    return {k: [o[k] for o in out] for k in ("mean", "lo", "hi")}


def first_at_or_below(steps, kl, eps):
    hit = np.flatnonzero(np.asarray(kl) <= eps)
    return int(steps[hit[0]]) if hit.size else None


def stays_below(steps, kl, eps):
    """First recorded step from which KL stays <= eps to the end, or None."""
    above = np.flatnonzero(~(np.asarray(kl) <= eps))
    if above.size == 0:
        return int(steps[0])
    if above[-1] == len(kl) - 1:
        return None
    return int(steps[above[-1] + 1])


def reach_stats(steps, per_seed, eps) -> dict:
    first = [first_at_or_below(steps, k, eps) for k in per_seed]
    stay = [stays_below(steps, k, eps) for k in per_seed]
    return {"eps": eps, "first_per_seed": first, "stay_per_seed": stay,
            "first_reached": sum(x is not None for x in first), "stay_reached": sum(x is not None for x in stay),
            "first_median": _median(first), "stay_median": _median(stay)}


def _median(xs):
    """Median over seeds, a seed that never reached counting as infinitely late (None if half never did)."""
    v = sorted(math.inf if x is None else x for x in xs)
    m = float(np.median(v)) if v else math.inf
    return None if not math.isfinite(m) else m


def ordering(values: dict) -> list[str]:
    return sorted(values, key=lambda a: values[a])


def aggregate(work: Path) -> dict:
    cfg = json.loads((work / "config.json").read_text())
    arms, Ks, seeds = cfg["arms"], cfg["K"], cfg["seeds"]
    steps_total = cfg["steps"]
    late_from = steps_total * 3 // 4
    res = {"schema": SCHEMA, "task": cfg["task"], "K": Ks, "seeds": seeds, "steps": steps_total, "lr": cfg["lr"],
           "every": cfg["every"], "late_window": [late_from, steps_total], "arms": arms,
           "labels": {a: LABELS[a] for a in arms}, "trainer": {}, "game": {}, "tables": {}, "agreement": {},
           "kl_measurement": "exact: softmax of the model's next-token logits over the answer tokens (single-token "
                             "answers, generation restricted to them), KL(pi_i || q_i) averaged over prompts"}
    for K in Ks:
        kK = str(K)
        res["trainer"][kK], res["game"][kK], res["tables"][kK] = {}, {}, {}
        finals, lates = {}, {}
        for arm in arms:
            tinfo = cfg["tables"][arm][kK]
            res["tables"][kK][arm] = {k: tinfo[k] for k in ("how", "values", "estimator", "estimator_params",
                                                              "baseline", "sha256")}
            runs = []
            for s in seeds:
                p = work / "runs" / f"{arm}-K{K}-s{s}.json"
                if not p.exists():
                    raise SystemExit(f"e2e report: missing run {p} (did train.py finish?)")
                runs.append(json.loads(p.read_text()))
            steps = np.asarray(runs[0]["curve"]["steps"])
            per_seed = np.array([np.mean(r["curve"]["kl"], axis=1) for r in runs])  # (seeds, steps)
            late = steps >= late_from
            final = per_seed[:, -1]
            late_avg = per_seed[:, late].mean(axis=1)
            finals[arm], lates[arm] = final, late_avg
            res["trainer"][kK][arm] = {
                "steps": steps.tolist(), "kl_per_seed": per_seed.tolist(), "curve": ci_curve(per_seed),
                "final_kl": ci(final), "late_kl": ci(late_avg),
                "final_kl_per_prompt": np.mean([r["curve"]["kl"][-1] for r in runs], axis=0).tolist(),
                "final_p_mean": np.mean([r["curve"]["p"][-1] for r in runs], axis=0).tolist(),
                "reach": [reach_stats(steps, per_seed, e) for e in cfg["eps"]],
                "wall_s": [r["wall_s"] for r in runs]}
            g = cfg["game"][arm][kK]
            gs = {}
            for key, st in g["stochastic"].items():
                c = np.asarray(st["kl_mean_per_seed"])
                gsteps = np.asarray(st["steps"])
                glate = c[:, gsteps >= late_from].mean(axis=1)
                gs[key] = {"lr": st["lr"], "optimizer": st["optimizer"], "steps": st["steps"], "curve": ci_curve(c),
                           "final_kl": ci(c[:, -1]), "late_kl": ci(glate),
                           "reach": [reach_stats(gsteps, c, e) for e in cfg["eps"]]}
            res["game"][kK][arm] = {"equilibrium": g["equilibrium"], "stochastic": gs}
        # paired differences against the coefgen default, per seed
        if "default" in arms:
            res["trainer"][kK]["paired_vs_default"] = {
                arm: {"late_kl_difference": ci(lates[arm] - lates["default"]),
                      "final_kl_difference": ci(finals[arm] - finals["default"])}
                for arm in arms if arm != "default"}
        tr_order = ordering({a: res["trainer"][kK][a]["late_kl"]["mean"] for a in arms})
        eq_order = ordering({a: res["game"][kK][a]["equilibrium"]["kl_mean"] for a in arms})
        st_orders = {key: ordering({a: res["game"][kK][a]["stochastic"][key]["late_kl"]["mean"] for a in arms})
                     for key in res["game"][kK][arms[0]]["stochastic"]}
        res["agreement"][kK] = {"trainer_order": tr_order, "game_equilibrium_order": eq_order,
                                "game_stochastic_order": st_orders,
                                "equilibrium_predicts_trainer": tr_order == eq_order,
                                "stochastic_predicts_trainer": {k: v == tr_order for k, v in st_orders.items()}}
    return res


def _fmt_ci(c, digits=3):
    if c["lo"] is None:
        return f"{c['mean']:.{digits}f}"
    return f"{c['mean']:.{digits}f} [{c['lo']:.{digits}f}, {c['hi']:.{digits}f}]"


def _fmt_reach(r, n):
    m = r["stay_median"]
    first = r["first_median"]
    a = "never" if first is None else f"{first:.0f}"
    b = "never" if m is None else f"{m:.0f}"
    return f"{a} ({r['first_reached']}/{n}) / {b} ({r['stay_reached']}/{n})"


def markdown(res: dict, png_name: str, wall: float | None) -> str:
    arms, Ks = res["arms"], res["K"]
    n = len(res["seeds"])
    lo, hi = res["late_window"]
    L = []
    L.append(f"Generated by `examples/e2e_trl/report.py` (do not edit by hand): {n} seeds "
             f"({res['seeds'][0]}..{res['seeds'][-1]}), {res['steps']} steps, AdamW lr {res['lr']:g}, "
             f"beta {res['task']['beta']:g}, {len(res['task']['prompts'])} prompts x "
             f"{len(res['task']['answers'])} answers." + (f" Wall time of the whole run: {wall:.0f} s." if wall else ""))
    L.append("")
    L.append(f"![KL against step]({png_name})")
    L.append("")
    L.append(f"KL(π‖q) (exact, mean over prompts), mean and 95% CI over seeds. *final*: at step {res['steps']}; "
             f"*late*: averaged over steps {lo}–{hi} (less step-to-step noise). Game: `coefgen.game` with the same "
             "tables, target, K, baseline (group mean), steps and seeds; *equilibrium* is its noiseless long-run "
             "limit (mean field), *stochastic* its Adam run at the learning rate shown.")
    L.append("")
    glrs = list(res["game"][str(Ks[0])][arms[0]]["stochastic"])
    head = ["K", "table", "trainer final KL", "trainer late KL", "game equilibrium KL"] + \
           [f"game late KL (Adam lr {res['game'][str(Ks[0])][arms[0]]['stochastic'][k]['lr']:g})" for k in glrs]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for K in Ks:
        for arm in arms:
            t = res["trainer"][str(K)][arm]
            g = res["game"][str(K)][arm]
            row = [str(K), res["labels"][arm], _fmt_ci(t["final_kl"]), _fmt_ci(t["late_kl"]),
                   f"{g['equilibrium']['kl_mean']:.3f}"] + [_fmt_ci(g["stochastic"][k]["late_kl"]) for k in glrs]
            L.append("| " + " | ".join(row) + " |")
    L.append("")
    eps = [r["eps"] for r in res["trainer"][str(Ks[0])][arms[0]]["reach"]]
    gkey = glrs[-1]
    glr = res["game"][str(Ks[0])][arms[0]]["stochastic"][gkey]["lr"]
    L.append("Steps to reach KL ≤ ε: median over seeds of the first step at or below ε / of the step from which "
             "KL stays ≤ ε to the end (in brackets: how many seeds got there; *never*: fewer than half did). "
             f"Game: the same for its Adam run at lr {glr:g}.")
    L.append("")
    head = ["K", "table"] + [f"trainer ε = {e:g}" for e in eps] + [f"game ε = {e:g}" for e in eps]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for K in Ks:
        for arm in arms:
            t = res["trainer"][str(K)][arm]
            g = res["game"][str(K)][arm]["stochastic"][gkey]
            L.append("| " + " | ".join([str(K), res["labels"][arm]] + [_fmt_reach(r, n) for r in t["reach"]]
                                       + [_fmt_reach(r, n) for r in g["reach"]]) + " |")
    L.append("")
    if any("paired_vs_default" in res["trainer"][str(K)] for K in Ks):
        L.append("Paired difference of late KL against the coefgen default (same seed: same initial model), 95% CI:")
        L.append("")
        for K in Ks:
            pv = res["trainer"][str(K)].get("paired_vs_default", {})
            parts = [f"{res['labels'][a]} − default = {_fmt_ci(v['late_kl_difference'])}" for a, v in pv.items()]
            L.append(f"- K = {K}: " + "; ".join(parts))
        L.append("")
    L.append("Per prompt: the trainer's final KL (mean over seeds) / the game's equilibrium KL. The target rows "
             "are in `e2e.json` (`task.target_q`).")
    L.append("")
    P = len(res["task"]["prompts"])
    head = ["K", "table"] + res["task"]["prompts"]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for K in Ks:
        for arm in arms:
            t = res["trainer"][str(K)][arm]["final_kl_per_prompt"]
            g = res["game"][str(K)][arm]["equilibrium"]["kl_per_prompt"]
            L.append("| " + " | ".join([str(K), res["labels"][arm]] + [f"{t[i]:.3f} / {g[i]:.3f}" for i in range(P)])
                     + " |")
    L.append("")
    L.append("Does the game predict the trainer's ordering (by late KL, best first)?")
    L.append("")
    for K in Ks:
        ag = res["agreement"][str(K)]
        lab = lambda o: " < ".join(res["labels"][a] for a in o)  # noqa: E731
        st = "; ".join(f"Adam lr {res['game'][str(K)][arms[0]]['stochastic'][k]['lr']:g}: "
                       f"{'yes' if ok else 'no (' + lab(ag['game_stochastic_order'][k]) + ')'}"
                       for k, ok in ag["stochastic_predicts_trainer"].items())
        L.append(f"- K = {K}: trainer {lab(ag['trainer_order'])}. Game equilibrium: "
                 f"{'same order' if ag['equilibrium_predicts_trainer'] else lab(ag['game_equilibrium_order'])}; "
                 f"game stochastic: {st}.")
    return "\n".join(L) + "\n"


def plot(res: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms, Ks = res["arms"], res["K"]
    colors = {"plugin": "tab:red", "digamma": "tab:orange", "default": "tab:blue"}
    glr = list(res["game"][str(Ks[0])][arms[0]]["stochastic"])[-1]
    fig, axes = plt.subplots(len(Ks), 2, figsize=(11, 3.6 * len(Ks)), squeeze=False, sharey=True)
    for i, K in enumerate(Ks):
        for j, side in enumerate(("trainer", "game")):
            ax = axes[i][j]
            for arm in arms:
                if side == "trainer":
                    d = res["trainer"][str(K)][arm]
                    x, c = d["steps"], d["curve"]
                else:
                    d = res["game"][str(K)][arm]["stochastic"][glr]
                    x, c = d["steps"], d["curve"]
                col = colors.get(arm)
                ax.plot(x, c["mean"], color=col, label=res["labels"][arm])
                if None not in c["lo"]:
                    ax.fill_between(x, c["lo"], c["hi"], color=col, alpha=0.25, linewidth=0)
                eq = res["game"][str(K)][arm]["equilibrium"]["kl_mean"]
                ax.axhline(eq, color=col, linestyle=":", linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            lrg = res["game"][str(K)][arms[0]]["stochastic"][glr]["lr"]
            title = (f"TRL GRPOTrainer, K = {K} (AdamW lr {res['lr']:g})" if side == "trainer"
                     else f"coefgen.game, K = {K} (softmax policy, Adam lr {lrg:g})")
            ax.set_title(title, fontsize=10)
            if j == 0:
                ax.set_ylabel("KL(π_answers ‖ q)")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"mean and 95% CI over {len(res['seeds'])} seeds; dotted: the game's equilibrium KL", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _atomic_write(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--out", default="docs/e2e", help="prefix of the .json and .png written")
    ap.add_argument("--docs", default=None, help="a Markdown page whose results section (between the markers) is replaced")
    ap.add_argument("--wall", type=float, default=None, help="the run's wall time in seconds (recorded)")
    a = ap.parse_args(argv)
    res = aggregate(Path(a.workdir))
    res["wall_s"] = a.wall
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out.with_suffix(".json"), json.dumps(res, indent=1, allow_nan=False, default=_nan_none) + "\n")
    png = out.with_suffix(".png")
    plot(res, png)
    md = markdown(res, png.name, a.wall)
    _atomic_write(Path(a.workdir) / "results.md", md)
    if a.docs:
        page = Path(a.docs)
        text = page.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            raise SystemExit(f"e2e report: {page} has no {BEGIN} ... {END} section")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        _atomic_write(page, head + BEGIN + "\n" + md + END + tail)
    print(md)


def _nan_none(o):
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


if __name__ == "__main__":
    main()
