"""Plot of ``coefgen game``: KL(p_t‖q) against step, log-log, one curve per table at its best lr.

Shaded: the 5%–95% band over prompts; dashed: the table's mean-field equilibrium KL (no
baseline); dotted: the equilibrium of the baseline's expected dynamics (loo/mean).
"""

from __future__ import annotations

import io

import numpy as np

from .writers import write_atomic


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
        eq = t["equilibrium"]["kl"]
        if eq is not None and eq > 0:
            ax.axhline(eq, color=color, ls="--", lw=1.1)
            lows.append(eq)
        eb = t.get("equilibrium_baseline")
        if eb and eb["kl"] is not None and eb["kl"] > 0:
            ax.axhline(eb["kl"], color=color, ls=":", lw=1.1)
            lows.append(eb["kl"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    finite = [v for v in lows if np.isfinite(v) and v > 0]
    if finite:
        ax.set_ylim(bottom=min(finite) / 3)
    ax.set_xlabel("step")
    ax.set_ylabel("KL(p_t || q), mean over prompts (band: 5%-95%)")
    n = len(doc["seeds"])
    eqb = f", dotted: {doc['baseline']} dynamics" if doc["baseline"] in ("loo", "mean") else ""
    ax.set_title(f"{doc['divergence']}, K = {doc['K']}, target {doc['target']}, {doc['prompts']} prompts, "
                 f"{doc['baseline']}/{doc['optimizer']}, {n} seed{'s' if n > 1 else ''}\n"
                 f"dashed: mean-field equilibrium (no baseline){eqb}", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    write_atomic(output, buf.getvalue())
