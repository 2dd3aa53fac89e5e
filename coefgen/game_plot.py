"""Plot of ``coefgen game``: KL(p_t‖q) against step, log-log, one curve per table at its best lr.

Shaded: the 5%–95% band over prompts; dashed: the table's mean-field equilibrium KL under the
game's baseline (none/loo/mean; under grpo, GRPO's measured long-run KL); dotted: the equilibrium
without baseline, for comparison.
"""

from __future__ import annotations

import numpy as np

from .plot import save_png


def plot_game(doc: dict, output: str) -> None:
    """Draw the document of ``coefgen.cli_game.run_game`` into a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lows = []
    for i, t in enumerate(doc["tables"]):
        color = colors[i % len(colors)]
        run = next((r for r in t["runs"] if r["lr"] == t["best_lr"]), None)
        if run is None:
            continue
        c = run["curve"]
        step = np.asarray(c["step"], dtype=float)
        keep = step >= 1
        f = lambda k: np.array([np.nan if x is None else x for x in c[k]], dtype=float)[keep]  # noqa: E731
        x, y, lo, hi = step[keep], f("kl_mean"), f("kl_q05"), f("kl_q95")
        ax.plot(x, y, color=color, lw=1.7, label=f"{t['id']} (lr {run['lr']:g})")
        ax.fill_between(x, np.maximum(lo, 1e-300), hi, color=color, alpha=0.15, lw=0)
        lows.append(np.nanmin(lo[lo > 0]) if np.any(lo > 0) else np.nan)
        main = t["equilibrium"]["kl"] if t.get("equilibrium") else (t.get("long_run") or {}).get("kl")
        if main is not None and main > 0:
            ax.axhline(main, color=color, ls="--", lw=1.1)
            lows.append(main)
        en = t.get("equilibrium_none")
        if doc["baseline"] != "none" and en and en["kl"] is not None and en["kl"] > 0:
            ax.axhline(en["kl"], color=color, ls=":", lw=1.1)
            lows.append(en["kl"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    finite = [v for v in lows if np.isfinite(v) and v > 0]
    if finite:
        ax.set_ylim(bottom=min(finite) / 3)
    ax.set_xlabel("step")
    ax.set_ylabel("KL(p_t || q), mean over prompts (band: 5%-95%)")
    n = len(doc["seeds"])
    b = doc["baseline"]
    dashed = "GRPO's long-run KL (measured)" if b == "grpo" else f"mean-field equilibrium ({b})"
    dotted = ", dotted: equilibrium without baseline" if b != "none" else ""
    ax.set_title(f"{doc['divergence']}, K = {doc['K']}, target {doc['target']}, {doc['prompts']} prompts, "
                 f"{b}/{doc['optimizer']}, {n} seed{'s' if n > 1 else ''}\n"
                 f"dashed: {dashed}{dotted}", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_png(fig, output)
