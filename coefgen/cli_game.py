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

from .errors import InputError

MAX_STEPS = 1_000_000
MAX_SEEDS = 100
MAX_LRS = 20
MAX_TABLES = 20
# prompts × answers × steps × learning rates × seeds × tables: ~1e8 of these take ~10 s
MAX_WORK = 5e10
DEFAULT_EPS = 0.05
SCHEMA = "coefgen.game/1"


# ------------------------------------------------------------------------------ inputs


def parse_lrs(text: str) -> list[float]:
    """'0.3,1,3' → [0.3, 1.0, 3.0]; each finite and > 0, at most MAX_LRS."""
    parts = [x.strip() for x in str(text).split(",")]
    if not parts or any(not x for x in parts):
        raise InputError(f"--lr {text!r}: give comma-separated learning rates, e.g. 0.3,1,3")
    out = []
    for x in parts:
        try:
            v = float(x)
        except ValueError:
            raise InputError(f"--lr: {x!r} is not a number") from None
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
    divergence, estimator = parts[0], parts[1]
    try:
        K = int(parts[-1][2:])
    except ValueError:
        raise InputError(f"table spec {spec!r}: K={parts[-1][2:]!r} is not an integer") from None
    params = {}
    for item in parts[2:-1]:
        if "=" not in item:
            raise InputError(f"table spec {spec!r}: {item!r} is not param=value")
        k, v = item.split("=", 1)
        params[k.strip()] = v.strip()
    return divergence, estimator, params, K


def resolve_table(arg: str) -> dict:
    """A table payload from a file (JSON/NPZ, sha256 checked) or a spec solved now."""
    from .runtime import TableError, load

    if os.path.exists(arg):
        try:
            t = load(arg)
        except TableError as e:
            raise InputError(str(e)) from None
        return {"payload": t.payload, "source": arg}
    spec = parse_table_spec(arg)
    if spec is None:
        raise InputError(f"table {arg!r}: not a file, nor a spec divergence/estimator[/param=value...]/K=n "
                         "(e.g. kl/aqp/tau=3/K=16, kl/plugin/K=8)")
    from .compiler import compile_table, precheck

    divergence, estimator, params, K = spec
    precheck(divergence, K, estimator, params)
    return {"payload": compile_table(divergence, K, estimator, params), "source": arg}


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
    return {
        "kl": _finite(np.mean(mf.kl)), "divergence": _finite(np.mean(mf.divergence)),
        "dead_mass": _finite(np.mean(mf.dead_mass)), "min_surviving_q": _finite(np.min(mf.min_surviving_q)),
        "residual": _finite(np.max(mf.residual)), "converged": bool(mf.converged), "baseline": mf.baseline,
    }


# ------------------------------------------------------------------------------ the game


def check_work(P: int, M: int, steps: int, runs: int) -> None:
    work = float(P) * M * steps * runs
    if work > MAX_WORK:
        raise InputError(f"prompts x answers x steps x lrs x seeds x tables = {work:.3g} exceeds the cap {MAX_WORK:.0e} "
                         "(reduce --prompts, --steps, --lr, --seeds or the tables)")


def run_game(tables: list[dict], *, target: str, prompts: int, steps: int, lrs: list[float], baseline: str,
             optimizer: str, seeds: int, seed: int, eps: float, mean_field_only: bool, gradient_stats: bool,
             progress=None, log=None, q=None) -> dict:
    """Mean-field equilibria and stochastic runs for every table; the ``coefgen.game/1`` document."""
    from . import __version__
    from .game import gradient_bias_variance, make_targets, mean_field_equilibrium, stochastic_run
    from .rewards import parse_reward

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
    check_work(P, M, steps, 0 if mean_field_only else len(tables) * len(lrs) * seeds)
    doc = {
        "schema": SCHEMA, "generator_version": __version__, "divergence": divergence, "K": K, "target": target,
        "prompts": P, "answers": M, "steps": steps, "lrs": lrs, "baseline": baseline, "optimizer": optimizer,
        "seeds": [seed + i for i in range(seeds)], "target_seed": seed, "eps": eps, "mean_field_only": mean_field_only,
        "ci": "seeds" if seeds > 1 else "prompts", "tables": [],
    }
    for tab in tables:
        pl = tab["payload"]
        values = np.asarray(pl["values"], dtype=float)
        entry = {"id": pl.get("table_id") or os.path.basename(tab["source"]), "source": tab["source"],
                 "estimator": pl["estimator"], "sha256": pl["sha256"]}
        entry["equilibrium"] = _equilibrium_doc(mean_field_equilibrium(values, q, reward, baseline="none"))
        entry["equilibrium_baseline"] = (
            _equilibrium_doc(mean_field_equilibrium(values, q, reward, baseline=baseline))
            if baseline in ("loo", "mean") else None)
        entry["runs"] = []
        for lr in lrs:
            if mean_field_only:
                break
            per_seed = []
            for s in doc["seeds"]:
                checkpoints = (0, steps // 10, steps) if gradient_stats else ()
                run = stochastic_run(values, q, steps=steps, lr=lr, baseline=baseline, optimizer=optimizer, seed=s,
                                     reward=reward, gradient_checkpoints=checkpoints, gradient_draws=200,
                                     progress=progress)
                per_seed.append(run)
                if log:
                    log(f"{entry['id']} lr={lr:g} seed={s}: final KL {float(np.mean(run.final_kl)):.4g}")
            finals = [float(np.mean(r.final_kl)) for r in per_seed]
            if seeds > 1:
                ci = _ci95(finals)
            else:
                ci = _ci95(per_seed[0].final_kl)
            rdoc = {
                "lr": lr, "final_kl": _finite(np.mean(finals)), "final_kl_ci95": _finite(ci),
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


def summary_text(doc: dict) -> str:
    """A readable table: per table, equilibria, final KL ± 95% CI at each lr, best lr, steps to ε."""
    lines = []
    P, M = doc["prompts"], doc["answers"]
    head = (f"game: {doc['divergence']}, K = {doc['K']}, target {doc['target']} ({P} prompts x {M} answers), "
            f"baseline {doc['baseline']}, {doc['optimizer']}")
    if not doc["mean_field_only"]:
        n = len(doc["seeds"])
        head += (f", {doc['steps']} steps, {n} seed{'s' if n > 1 else ''}; "
                 f"final KL ± 95% CI over {'seeds' if n > 1 else 'prompts'}")
    lines.append(head)
    eq_b = doc["baseline"] if doc["baseline"] in ("loo", "mean") else None
    cols = ["table", "eq. KL", "dead mass", "min surviving q"]
    if eq_b:
        cols.append(f"eq. KL ({eq_b})")
    if not doc["mean_field_only"]:
        cols += ["lr", "final KL", f"steps to KL<={doc['eps']:g}: first / stays"]
    rows = []
    for t in doc["tables"]:
        eq = t["equilibrium"]
        base = [t["id"], _fmt(eq["kl"]) + ("" if eq["converged"] else " (not converged)"),
                _fmt(eq["dead_mass"], 3), _fmt(eq["min_surviving_q"], 3)]
        if eq_b:
            base.append(_fmt(t["equilibrium_baseline"]["kl"]))
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
    if not doc["mean_field_only"]:
        lines.append("* best lr (lowest final KL; lowest final D_phi if KL is infinite). eq. KL: mean-field equilibrium KL(p*||q) of the expected dynamics "
                     "without baseline, mean over prompts" + (f"; ({eq_b}): of the {eq_b} baseline's expected dynamics"
                                                              if eq_b else "") + ". Steps: median over seeds.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ click


@click.command()
@click.argument("tables", nargs=-1, required=True)
@click.option("--target", default="zipf:1.5:10", show_default=True,
              help="zipf:s:M (q_z ∝ z^-s), dirichlet:alpha:M (one draw per prompt) or a file (JSON list of lists, .npy).")
@click.option("--prompts", type=int, default=256, show_default=True, help="Number of prompts P.")
@click.option("--steps", type=int, default=2000, show_default=True, help=f"Training steps per run (<= {MAX_STEPS}).")
@click.option("--lr", "lr", default="0.3,1,3", show_default=True, help="Learning rates, comma-separated.")
@click.option("--baseline", type=click.Choice(["loo", "mean", "grpo", "none"]), default="loo", show_default=True,
              help="Advantage: leave-one-out, group mean, GRPO mean/std, or none (the raw cost).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--seeds", type=int, default=1, show_default=True, help="Independent runs per learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed (runs use seed, seed+1, ...; Dirichlet targets use seed).")
@click.option("--eps", type=float, default=DEFAULT_EPS, show_default=True, help="Report the first step where the mean KL <= eps.")
@click.option("--json", "json_path", default=None, help="Write the full results (schema coefgen.game/1) here.")
@click.option("-o", "--output", default=None, help="PNG: KL against step (log-log), equilibria dashed.")
@click.option("--mean-field-only", is_flag=True, help="Only the mean-field equilibria (no stochastic runs).")
@click.option("--gradient-stats", is_flag=True, help="Measure the gradient's bias and variance at steps 0, N/10, N (first seed).")
def game(tables, target, prompts, steps, lr, baseline, optimizer, seeds, seed, eps, json_path, output, mean_field_only,
         gradient_stats):
    """Play the alignment game with TABLE... (files, or specs such as kl/aqp/tau=3/K=16).

    P prompts, each a softmax policy over M answers trained to the target q by descent on
    D(p||q) with each sample's cost t[c] - r(q); reports the mean-field equilibrium and the
    KL(p||q) that stochastic training reaches (DESIGN §10).
    """
    from .writers import write_atomic

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
    if mean_field_only and output:
        raise InputError("-o plots the stochastic runs: drop --mean-field-only or -o")
    from .game import MAX_PROMPTS

    if not 1 <= prompts <= MAX_PROMPTS:
        raise InputError(f"--prompts must be between 1 and {MAX_PROMPTS}, got {prompts}")
    from .game import make_targets

    q = make_targets(target, prompts, seed)          # bad targets and caps fail before any table is solved
    check_work(q.shape[0], q.shape[1], steps, 0 if mean_field_only else len(tables) * len(lrs) * seeds)
    resolved = [resolve_table(t) for t in tables]
    total = 0 if mean_field_only else len(resolved) * len(lrs) * seeds * steps
    tty = sys.stderr.isatty()
    kwargs = dict(target=target, prompts=prompts, steps=steps, lrs=lrs, baseline=baseline, optimizer=optimizer,
                  seeds=seeds, seed=seed, eps=eps, mean_field_only=mean_field_only, gradient_stats=gradient_stats, q=q)
    if tty and total:
        with click.progressbar(length=total, label="game", file=sys.stderr, show_eta=True) as bar:
            doc = run_game(resolved, progress=bar.update, **kwargs)
    else:
        doc = run_game(resolved, log=(lambda m: click.echo(m, err=True)) if total else None, **kwargs)
    click.echo(summary_text(doc))
    import json

    if json_path:
        write_atomic(json_path, (json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode())
        click.echo(f"wrote {json_path}", err=True)
    if output:
        from .game_plot import plot_game

        plot_game(doc, output)
        click.echo(f"wrote {output}", err=True)
