"""``coefgen game``: play the alignment game of DESIGN §10 with tables (issue 10).

The click function is thin; ``run_game`` does the work and returns the JSON document
(schema ``coefgen.game/1``) that the summary, the JSON file and the plot are made from.
"""

from __future__ import annotations

import math
import os
import sys

import click
import numpy as np

from .cli_types import ASCII_FLOAT, ASCII_INT
from .errors import InputError

MAX_STEPS = 1_000_000
MAX_SEEDS = 100
MAX_LRS = 20
MAX_TABLES = 20
# prompts × answers × steps × learning rates × seeds × tables: ~1e8 of these take ~10 s; the mean-field
# equilibria add MF_WEIGHT × distinct target rows × answers × K × MF_MAX_STEPS per equilibrium (an implicit
# step costs ~2 stochastic units per answer and table entry, measured), two equilibria per table unless
# the baseline is none
MAX_WORK = 5e10
MF_WEIGHT = 2.0
DEFAULT_EPS = 0.05
DRIFT_TOL = 0.05   # long-run KL: the tail's two halves within 5% of each other, else "still drifting"
SCHEMA = "coefgen.game/2"
TABLE_BASELINES = ("none", "loo", "mean")


# ------------------------------------------------------------------------------ inputs


def parse_lrs(text: str) -> list[float]:
    """'0.3,1,3' → [0.3, 1.0, 3.0]; each finite and > 0, at most MAX_LRS."""
    parts = [x.strip() for x in str(text).split(",")]
    if not parts or any(not x for x in parts):
        raise InputError(f"--lr {text!r}: give comma-separated learning rates, e.g. 0.3,1,3")
    from .spec_numbers import parse_exact

    out = []
    for x in parts:
        try:
            v = float(parse_exact(x))  # ASCII digits only ('٣' is not read as 3), caps before converting
        except ValueError:
            raise InputError(f"--lr: {x[:40]!r} is not a number (ASCII digits); learning rates must be finite and > 0") from None
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"--lr: learning rates must be finite and > 0, got {x}")
        out.append(v)
    if len(out) > MAX_LRS:
        raise InputError(f"--lr: {len(out)} learning rates exceed the cap {MAX_LRS}")
    if len(set(out)) != len(out):
        raise InputError(f"--lr {text!r}: a learning rate is repeated")
    return out


def parse_table_spec(spec: str):
    """'kl/aqp/tau=3/K=16' → (divergence, estimator, params, K); None if ``spec`` is not of that form."""
    parts = spec.split("/")
    if len(parts) < 3 or not parts[-1].startswith("K="):
        return None
    from .spec_numbers import show, spec_number

    divergence, estimator = parts[0], parts[1]
    try:
        K = spec_number(parts[-1][2:], "K", f"table spec {show(spec)}", integer=True)  # ASCII digits, no '_'
    except InputError:
        raise InputError(f"table spec {show(spec)}: K={show(parts[-1][2:])} is not an integer (ASCII digits)") from None
    params = {}
    for item in parts[2:-1]:
        if "=" not in item:
            raise InputError(f"table spec {spec!r}: {item!r} is not param=value")
        k, v = item.split("=", 1)
        if k.strip() in params:
            raise InputError(f"table spec {show(spec)}: parameter {k.strip()!r} is given twice")
        params[k.strip()] = v.strip()
    return divergence, estimator, params, K


def open_table(arg: str) -> dict:
    """A table file loaded (JSON/NPZ, sha256 checked: cheap), or a spec parsed and prechecked but not solved.

    ``declared``: the baseline the table is for: a file's payload field ``baseline`` (absent in files
    written before baselines existed: "none"); a spec's ``baseline=`` parameter, else None (undeclared)."""
    from .runtime import TableError, load

    if os.path.exists(arg):
        try:
            t = load(arg)
        except TableError as e:
            raise InputError(str(e)) from None
        declared = t.payload.get("baseline", "none")
        if declared not in TABLE_BASELINES:
            raise InputError(f"table {arg}: unknown baseline {str(declared)[:20]!r} (expected none, loo or mean)")
        return {"payload": t.payload, "source": arg, "K": t.K, "declared": declared}
    spec = parse_table_spec(arg)
    if spec is None:
        raise InputError(f"table {arg!r}: not a file, nor a spec divergence/estimator[/param=value...]/K=n "
                         "(e.g. kl/aqp/tau=3/K=16, kl/plugin/K=8, kl/plugin/baseline=loo/K=8)")
    from .compiler import precheck

    divergence, estimator, params, K = spec
    declared = params.pop("baseline", None)
    if declared is not None and declared not in TABLE_BASELINES:
        raise InputError(f"table spec {arg!r}: baseline={declared!r}: choose none, loo or mean")
    try:
        precheck(divergence, K, estimator, params, declared or "none")
    except InputError as e:
        raise InputError(f"table spec {arg!r}: {e}") from None
    return {"payload": None, "source": arg, "K": K, "declared": declared,
            "spec": (divergence, estimator, params, declared or "none")}


def solve_table(tab: dict) -> dict:
    """Fill ``payload`` of a spec opened by ``open_table`` (a loo/mean table at K: the K-1 solution, t_K = t_{K-1})."""
    if tab["payload"] is not None:
        return tab
    from .compiler import compile_table

    divergence, estimator, params, baseline = tab["spec"]
    return dict(tab, payload=compile_table(divergence, tab["K"], estimator, params, baseline))


def resolve_table(arg: str) -> dict:
    """A table payload from a file (JSON/NPZ, sha256 checked) or a spec solved now."""
    return solve_table(open_table(arg))


def game_baseline(requested: str | None, tables: list[dict]) -> str:
    """The advantage estimator the game plays: ``requested`` (--baseline) or the tables' declared baseline.

    A table declared for one baseline is refused under another (the trainer integrations refuse the
    same mismatch), except that a ``mean`` table may be played under ``grpo`` (GRPO subtracts the group
    mean, then divides by the group std: the std step is the measured, opt-in part). Undeclared (specs
    without ``baseline=``): any baseline; none if nothing says otherwise."""
    declared = {(os.path.basename(t["source"]) if t.get("payload") is not None else t["source"]): t["declared"]
                for t in tables if t["declared"] is not None}
    kinds = sorted(set(declared.values()))
    if requested is None:
        if len(kinds) > 1:
            raise InputError("tables declare different baselines (" + ", ".join(f"{s}: {b}"
                             for s, b in declared.items()) + "): play tables of one baseline per game")
        return kinds[0] if kinds else "none"
    for src, b in declared.items():
        if b != requested and not (b == "mean" and requested == "grpo"):
            raise InputError(f"--baseline {requested} contradicts table {src}, which is for baseline "
                             f"{b} (drop --baseline, or pass a table made for {requested})")
    return requested


def _finite(x):
    """JSON number or null (inf/nan)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _ci95(values) -> float:
    """Half-width of a 95% Student-t interval for the mean of ``values``."""
    from scipy.stats import t as student

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float("nan")
    return float(student.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def _equilibrium_doc(mf) -> dict:
    rows = np.asarray(mf.converged_rows, dtype=bool)
    return {
        "kl": _finite(np.mean(mf.kl)), "divergence": _finite(np.mean(mf.divergence)),
        "dead_mass": _finite(np.mean(mf.dead_mass)), "min_surviving_q": _finite(np.min(mf.min_surviving_q)),
        "residual": _finite(np.max(mf.residual)), "converged": bool(mf.converged),
        "prompts_not_converged": int(np.sum(~rows)), "method": sorted(set(str(m) for m in mf.method)),
        "baseline": mf.baseline,
    }


# ------------------------------------------------------------------------------ the game


def equilibria_per_table(baseline: str) -> int:
    """Mean-field equilibria computed per table: the game's baseline and, beside it, no baseline."""
    return 1 if baseline == "none" else 2


def mean_field_work(rows: int, M: int, K: int, equilibria: int) -> float:
    """Upper estimate of the mean-field work: MF_WEIGHT × distinct target rows × M × K × MF_MAX_STEPS per equilibrium."""
    from .game import MF_MAX_STEPS

    return MF_WEIGHT * float(rows) * M * K * MF_MAX_STEPS * equilibria


def check_work(P: int, M: int, steps: int, runs: int, mf_work: float = 0.0) -> None:
    """Refuse before any work: stochastic runs (prompts x answers x steps x lrs x seeds x tables) plus the
    mean-field equilibria (``mean_field_work`` summed over tables) must stay within MAX_WORK."""
    from .game import MF_MAX_STEPS

    stoch = float(P) * M * steps * runs
    work = stoch + mf_work
    if work > MAX_WORK:
        raise InputError(
            f"work {work:.3g} = runs {stoch:.3g} (prompts x answers x steps x lrs x seeds x tables) + mean field "
            f"{mf_work:.3g} ({MF_WEIGHT:g} x distinct target rows x answers x K x {MF_MAX_STEPS} steps x equilibria, "
            f"per table) exceeds the cap {MAX_WORK:.0e} (reduce --prompts, --steps, --lr, --seeds, the tables, K or the "
            "target's answers)")


def run_game(tables: list[dict], *, target: str, prompts: int, steps: int, lrs: list[float], baseline: str,
             optimizer: str, seeds: int, seed: int, eps: float, mean_field_only: bool, gradient_stats: bool,
             progress=None, log=None, q=None) -> dict:
    """Mean-field equilibria and stochastic runs for every table; the ``coefgen.game/2`` document.

    Equilibria: ``equilibrium`` is that of the game's baseline (none, loo, mean; null for grpo, whose std
    normalisation has no closed-form expected dynamics), ``equilibrium_none`` the no-baseline one beside it,
    and for grpo ``equilibrium_mean`` (GRPO without its std step). Under grpo, ``long_run`` is GRPO's own
    measured long-run KL: the mean of KL(p_t||q) over steps >= steps/2 at the smallest lr, with a 95% CI."""
    from . import __version__
    from .game import make_targets, mean_field_equilibrium, stochastic_run, unique_rows
    from .rewards import parse_reward

    if baseline == "grpo" and mean_field_only:
        raise InputError("--baseline grpo: GRPO's std normalisation has no mean-field equilibrium; drop "
                         "--mean-field-only (its long-run KL is measured by the stochastic runs)")
    tables = [solve_table(t) if "declared" in t else t for t in tables]
    payloads = [t["payload"] for t in tables]
    Ks = sorted({p["K"] for p in payloads})
    divs = sorted({p["divergence"] for p in payloads})
    if len(Ks) > 1:
        raise InputError(f"tables of different K ({', '.join(map(str, Ks))}): a game compares tables at one group size")
    if len(divs) > 1:
        raise InputError(f"tables of different divergences ({', '.join(divs)}): a game has one objective")
    K, divergence = Ks[0], divs[0]
    reward = parse_reward(divergence)
    if q is None:
        q = make_targets(target, prompts, seed)
    P, M = q.shape
    rows = unique_rows(q)[0].shape[0]
    check_work(P, M, steps, 0 if mean_field_only else len(tables) * len(lrs) * seeds,
               len(tables) * mean_field_work(rows, M, K, equilibria_per_table(baseline)))
    tail_from = steps // 2
    doc = {
        "schema": SCHEMA, "generator_version": __version__, "divergence": divergence, "K": K, "target": target,
        "prompts": P, "answers": M, "steps": steps, "lrs": lrs, "baseline": baseline, "optimizer": optimizer,
        "seeds": [seed + i for i in range(seeds)], "target_seed": seed, "eps": eps, "mean_field_only": mean_field_only,
        "ci": "seeds" if seeds > 1 else "prompts", "tail_from": tail_from, "tables": [],
    }
    for tab in tables:
        pl = tab["payload"]
        values = np.asarray(pl["values"], dtype=float)
        entry = {"id": pl.get("table_id") or os.path.basename(tab["source"]), "source": tab["source"],
                 "estimator": pl["estimator"], "sha256": pl.get("sha256"), "table_baseline": tab.get("declared")}
        none_eq = _equilibrium_doc(mean_field_equilibrium(values, q, reward, baseline="none"))
        entry["equilibrium_none"] = none_eq
        if baseline == "none":
            entry["equilibrium"] = none_eq
        elif baseline in ("loo", "mean"):
            entry["equilibrium"] = _equilibrium_doc(mean_field_equilibrium(values, q, reward, baseline=baseline))
        else:
            entry["equilibrium"] = None
            entry["equilibrium_mean"] = _equilibrium_doc(mean_field_equilibrium(values, q, reward, baseline="mean"))
        entry["runs"] = []
        for lr in lrs:
            if mean_field_only:
                break
            per_seed = []
            for s in doc["seeds"]:
                checkpoints = (0, steps // 10, steps) if gradient_stats else ()
                run = stochastic_run(values, q, steps=steps, lr=lr, baseline=baseline, optimizer=optimizer, seed=s,
                                     reward=reward, gradient_checkpoints=checkpoints, gradient_draws=200,
                                     progress=progress, tail_from=tail_from)
                per_seed.append(run)
                if log:
                    log(f"{entry['id']} lr={lr:g} seed={s}: final KL {float(np.mean(run.final_kl)):.4g}")
            finals = [float(np.mean(r.final_kl)) for r in per_seed]
            tails = [float(np.mean(r.tail_kl)) for r in per_seed]
            if seeds > 1:
                ci, tci = _ci95(finals), _ci95(tails)
            else:
                ci, tci = _ci95(per_seed[0].final_kl), _ci95(per_seed[0].tail_kl)
            rdoc = {
                "lr": lr, "final_kl": _finite(np.mean(finals)), "final_kl_ci95": _finite(ci),
                "tail_kl": _finite(np.mean(tails)), "tail_kl_ci95": _finite(tci),
                "tail_kl_early": _finite(np.mean([np.mean(r.tail_kl_early) for r in per_seed])),
                "tail_kl_late": _finite(np.mean([np.mean(r.tail_kl_late) for r in per_seed])),
                "final_divergence": _finite(np.mean([r.divergence_mean[-1] for r in per_seed])),
                "steps_to_eps": [r.steps_to(eps) for r in per_seed],
                "steps_to_stay_eps": [r.steps_to_stay(eps) for r in per_seed],
                "curve": {
                    "step": [int(x) for x in per_seed[0].steps],
                    "kl_mean": [_finite(x) for x in np.mean([r.kl_mean for r in per_seed], axis=0)],
                    "kl_q05": [_finite(x) for x in np.mean([r.kl_q05 for r in per_seed], axis=0)],
                    "kl_q95": [_finite(x) for x in np.mean([r.kl_q95 for r in per_seed], axis=0)],
                    "divergence_mean": [_finite(x) for x in np.mean([r.divergence_mean for r in per_seed], axis=0)],
                },
            }
            if gradient_stats:
                rdoc["gradient"] = [
                    {"step": st, "relative_bias": _finite(g.relative_bias),
                     "relative_bias_stderr": _finite(g.relative_bias_stderr),
                     "relative_variance": _finite(g.relative_variance), "cosine": _finite(g.cosine)}
                    for st, g in per_seed[0].gradient]
            entry["runs"].append(rdoc)
        if entry["runs"]:
            # lowest final KL; if KL is infinite everywhere (q_z = 0 with a divergence finite there), lowest D_φ
            key = "final_kl" if any(r["final_kl"] is not None for r in entry["runs"]) else "final_divergence"
            finite = [r for r in entry["runs"] if r[key] is not None]
            entry["best_lr"] = min(finite, key=lambda r: r[key])["lr"] if finite else None
        else:
            entry["best_lr"] = None
        if baseline == "grpo" and entry["runs"]:
            small = min(entry["runs"], key=lambda r: r["lr"])
            early, late = small["tail_kl_early"], small["tail_kl_late"]
            drift = None if early is None or late is None or not early > 0 else late / early - 1.0
            entry["long_run"] = {"baseline": "grpo", "lr": small["lr"], "from_step": tail_from, "kl": small["tail_kl"],
                                 "kl_ci95": small["tail_kl_ci95"], "drift": _finite(drift) if drift is not None else None,
                                 "settled": bool(drift is not None and abs(drift) <= DRIFT_TOL)}
        doc["tables"].append(entry)
    return doc


def _fmt(x, digits=4):
    if x is None:
        return "inf"
    return f"{x:.{digits}g}"


def _steps(values) -> str:
    """Median over seeds of a steps-to-ε list ('-' if never; 'n/S seeds' if only some reached it)."""
    reached = [s for s in values if s is not None]
    if not reached:
        return "-"
    m = str(int(np.median(reached)))
    return m if len(reached) == len(values) else f"{m} ({len(reached)}/{len(values)} seeds)"


BASELINE_WORDS = {"none": "no baseline: the raw cost", "loo": "leave-one-out baseline",
                  "mean": "group-mean baseline", "grpo": "GRPO: group mean, then / group std"}


def _eq_cell(eq) -> str:
    """An equilibrium's KL, marked † if it is the increasing-branch stationary point, and 'not converged' plainly."""
    if eq is None:
        return "-"
    cell = _fmt(eq["kl"]) + ("†" if "kkt-branch" in eq.get("method", []) else "")
    if not eq["converged"]:
        cell += f" NOT CONVERGED ({eq.get('prompts_not_converged', '?')} prompts)"
    return cell


def summary_text(doc: dict) -> str:
    """A readable table: per table, equilibria (each column named by its baseline), final KL ± 95% CI at each lr,
    best lr, steps to ε; under grpo GRPO's measured long-run KL first."""
    lines = []
    P, M, b = doc["prompts"], doc["answers"], doc["baseline"]
    head = (f"game: {doc['divergence']}, K = {doc['K']}, target {doc['target']} ({P} prompts x {M} answers), "
            f"baseline {b} ({BASELINE_WORDS[b]}), {doc['optimizer']}")
    if not doc["mean_field_only"]:
        n = len(doc["seeds"])
        head += (f", {doc['steps']} steps, {n} seed{'s' if n > 1 else ''}; "
                 f"± 95% CI over {'seeds' if n > 1 else 'prompts'}")
    lines.append(head)
    grpo = b == "grpo"
    if grpo:
        cols = ["table", "long-run KL (grpo)", "eq. KL (mean, no std)", "eq. KL (no baseline)"]
    else:
        cols = ["table", f"eq. KL ({b})", "dead mass", "min surviving q"] + (
            ["eq. KL (no baseline)"] if b != "none" else [])
    if not doc["mean_field_only"]:
        cols += ["lr", f"final KL ({b})", f"steps to KL<={doc['eps']:g}: first / stays"]
    rows = []
    eqs = []
    for t in doc["tables"]:
        if grpo:
            lr_ = t.get("long_run")
            long_run = "-" if not lr_ else (_fmt(lr_["kl"]) + (f" ± {lr_['kl_ci95']:.2g}" if lr_["kl_ci95"] is not None
                                                               else "") + f" (lr {lr_['lr']:g})")
            if lr_ and not lr_["settled"]:
                long_run += " drifting" + (f" {lr_['drift']:+.0%}" if lr_["drift"] is not None else "")
            base = [t["id"], long_run, _eq_cell(t["equilibrium_mean"]), _eq_cell(t["equilibrium_none"])]
            eqs += [t["equilibrium_mean"], t["equilibrium_none"]]
        else:
            eq = t["equilibrium"]
            base = [t["id"], _eq_cell(eq), _fmt(eq["dead_mass"], 3), _fmt(eq["min_surviving_q"], 3)]
            eqs.append(eq)
            if b != "none":
                base.append(_eq_cell(t["equilibrium_none"]))
                eqs.append(t["equilibrium_none"])
        if doc["mean_field_only"] or not t["runs"]:
            rows.append(base)
            continue
        for i, r in enumerate(t["runs"]):
            first = base if i == 0 else [""] * len(base)
            mark = "*" if r["lr"] == t["best_lr"] else ""
            st = f"{_steps(r['steps_to_eps'])} / {_steps(r['steps_to_stay_eps'])}"
            ci = r["final_kl_ci95"]
            rows.append(first + [f"{r['lr']:g}{mark}", _fmt(r["final_kl"]) + (f" ± {ci:.2g}" if ci is not None else ""), st])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for t in doc["tables"]:
        for r in t["runs"]:
            if r.get("gradient"):
                pts = "; ".join(f"step {g['step']}: bias {_fmt(g['relative_bias'], 3)} ± {_fmt(g['relative_bias_stderr'], 2)}, "
                                f"variance {_fmt(g['relative_variance'], 3)}, cos {_fmt(g['cosine'], 3)}" for g in r["gradient"])
                lines.append(f"gradient {t['id']} lr={r['lr']:g} (relative to |grad D|): {pts}")
    if grpo:
        lines.append(f"long-run KL (grpo): GRPO's own, measured: mean KL(p_t||q) over steps >= {doc['tail_from']} at the "
                     "smallest lr (GRPO's std step has no closed-form equilibrium); 'drifting': the tail's second "
                     f"half differs from its first by more than {DRIFT_TOL:.0%} (not yet stationary: more --steps). "
                     "eq. KL (mean, no std) and (no baseline): mean-field equilibria of other estimators, for "
                     "comparison, not GRPO's.")
    else:
        under = "without baseline" if b == "none" else f"under the {BASELINE_WORDS[b]}"
        note = (f"eq. KL ({b}): mean-field equilibrium KL(p*||q) of the expected dynamics {under}, "
                "mean over prompts (dead mass, min surviving q: of that equilibrium)")
        if b != "none":
            note += "; eq. KL (no baseline): the same table without baseline, for comparison, not what this trainer reaches"
        lines.append(note + ".")
    if any(e is not None and "kkt-branch" in e.get("method", []) for e in eqs):
        lines.append("†: the flow from the uniform policy did not settle within its step budget (e.g. answers that must "
                     "revive left at p ~ 1e-18); reported: the verified stable stationary point on the increasing "
                     "branch of T.")
    if any(e is not None and not e["converged"] for e in eqs):
        lines.append("NOT CONVERGED: no verified equilibrium (residual in the JSON); the number is the last state "
                     "of the integration, not an equilibrium.")
    if not doc["mean_field_only"]:
        lines.append("* best lr (lowest final KL; lowest final D_phi if KL is infinite). Steps: median over seeds.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ click


@click.command()
@click.argument("tables", nargs=-1, required=True)
@click.option("--target", default="zipf:1.5:10", show_default=True,
              help="zipf:s:M (q_z ∝ z^-s), dirichlet:alpha:M (one draw per prompt) or a file (JSON list of lists, .npy).")
@click.option("--prompts", type=ASCII_INT, default=256, show_default=True, help="Number of prompts P.")
@click.option("--steps", type=ASCII_INT, default=2000, show_default=True, help=f"Training steps per run (<= {MAX_STEPS}).")
@click.option("--lr", "lr", default="0.3,1,3", show_default=True, help="Learning rates, comma-separated.")
@click.option("--baseline", type=click.Choice(["loo", "mean", "grpo", "none"]), default=None,
              help="Advantage: leave-one-out, group mean, GRPO mean/std, or none (the raw cost). Default: the baseline "
                   "the table files declare (none for files without one and for specs without baseline=).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--seeds", type=ASCII_INT, default=1, show_default=True, help="Independent runs per learning rate.")
@click.option("--seed", type=ASCII_INT, default=0, show_default=True, help="First seed (runs use seed, seed+1, ...; Dirichlet targets use seed).")
@click.option("--eps", type=ASCII_FLOAT, default=DEFAULT_EPS, show_default=True, help="Report the first step where the mean KL <= eps.")
@click.option("--json", "json_path", default=None, help="Write the full results (schema coefgen.game/2) here (- for stdout).")
@click.option("-o", "--output", default=None, help="PNG: KL against step (log-log), equilibria dashed.")
@click.option("--mean-field-only", is_flag=True, help="Only the mean-field equilibria (no stochastic runs).")
@click.option("--gradient-stats", is_flag=True, help="Measure the gradient's bias and variance at steps 0, N/10, N (first seed).")
def game(tables, target, prompts, steps, lr, baseline, optimizer, seeds, seed, eps, json_path, output, mean_field_only,
         gradient_stats):
    """Play the alignment game with TABLE... (files, or specs such as kl/aqp/tau=3/K=16).

    P prompts, each a softmax policy over M answers trained to the target q by descent on
    D(p||q) with each sample's cost t[c] - r(q) under the trainer's advantage estimator
    (--baseline); reports the mean-field equilibrium under that baseline (GRPO's std step has
    none: its long-run KL is measured) and the KL(p||q) that stochastic training reaches
    (docs/game.md).
    """
    from .writers import STDOUT, check_outputs, write_atomic

    inputs = [("table", t) for t in tables if os.path.exists(t)]
    inputs += [("target", target)] if os.path.exists(target) else []
    check_outputs([("--json", json_path, "text"), ("-o/--output", output, "binary")], inputs)  # before any work
    lrs = parse_lrs(lr)
    if len(tables) > MAX_TABLES:
        raise InputError(f"{len(tables)} tables exceed the cap {MAX_TABLES}")
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"--steps must be between 1 and {MAX_STEPS}, got {steps}")
    if not 1 <= seeds <= MAX_SEEDS:
        raise InputError(f"--seeds must be between 1 and {MAX_SEEDS}, got {seeds}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if not (math.isfinite(eps) and eps > 0):
        raise InputError(f"--eps must be finite and > 0, got {eps}")
    if mean_field_only and output is not None:
        raise InputError("-o plots the stochastic runs: drop --mean-field-only or -o")
    from .game import MAX_PROMPTS

    if not 1 <= prompts <= MAX_PROMPTS:
        raise InputError(f"--prompts must be between 1 and {MAX_PROMPTS}, got {prompts}")
    from .game import make_targets, unique_rows

    q = make_targets(target, prompts, seed)          # bad targets and caps fail before any table is solved
    opened = [open_table(t) for t in tables]         # files loaded, specs parsed (not solved)
    baseline = game_baseline(baseline, opened)
    if baseline == "grpo" and mean_field_only:
        raise InputError("--baseline grpo: GRPO's std normalisation has no mean-field equilibrium; drop "
                         "--mean-field-only (its long-run KL is measured by the stochastic runs)")
    Ks = sorted({t["K"] for t in opened})
    if len(Ks) > 1:
        raise InputError(f"tables of different K ({', '.join(map(str, Ks))}): a game compares tables at one group size")
    rows = unique_rows(q)[0].shape[0]
    check_work(q.shape[0], q.shape[1], steps, 0 if mean_field_only else len(tables) * len(lrs) * seeds,
               len(opened) * mean_field_work(rows, q.shape[1], Ks[0], equilibria_per_table(baseline)))
    resolved = [solve_table(t) for t in opened]
    total = 0 if mean_field_only else len(resolved) * len(lrs) * seeds * steps
    tty = sys.stderr.isatty()
    kwargs = dict(target=target, prompts=prompts, steps=steps, lrs=lrs, baseline=baseline, optimizer=optimizer,
                  seeds=seeds, seed=seed, eps=eps, mean_field_only=mean_field_only, gradient_stats=gradient_stats, q=q)
    if tty and total:
        with click.progressbar(length=total, label="game", file=sys.stderr, show_eta=True) as bar:
            doc = run_game(resolved, progress=bar.update, **kwargs)
    else:
        doc = run_game(resolved, log=(lambda m: click.echo(m, err=True)) if total else None, **kwargs)
    import json

    data = json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"
    if json_path == STDOUT:  # one rule for '-': standard output (then only the JSON goes there)
        sys.stdout.write(data)
    else:
        click.echo(summary_text(doc))
    if json_path is not None and json_path != STDOUT:
        write_atomic(json_path, data.encode())
        click.echo(f"wrote {json_path}", err=True)
    if output is not None:
        from .game_plot import plot_game

        plot_game(doc, output)
        click.echo(f"wrote {output}", err=True)
