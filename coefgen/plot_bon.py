"""``coefgen bon -o PNG``: win rate of best-of-n against KL(π_n‖π_ref), with the bounds' curve.

The curve of the bounds is (log n − (n−1)/n, n/(n+1)) for real n ≥ 1: a continuous reference
lies on it; a discrete one lies below-left of its point for the same n.
"""

from __future__ import annotations

import numpy as np

from .bon import kl_bound, win_rate_bound
from .plot import save_png


def plot_bon(doc: dict, output: str) -> None:
    """Plot a ``coefgen bon`` document (its sweep) to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["sweep"]
    n = np.array([r["n"] for r in rows], dtype=float)
    kl = np.array([r["kl"] for r in rows])
    win = np.array([r["win_rate"] for r in rows])
    est = np.array([r["kl_estimator"] for r in rows])
    order = np.argsort(n)
    n, kl, win, est = n[order], kl[order], win[order], est[order]
    grid = np.geomspace(1.0, max(float(n.max()), 2.0), 400)

    fig, ax = plt.subplots(figsize=(7.5, 5.2), constrained_layout=True)
    ax.plot(kl_bound(grid), win_rate_bound(grid), color="0.35", lw=1.4, ls="--",
            label="bounds: (log n - (n-1)/n, n/(n+1))")
    marker = "o" if n.size <= 64 else None
    if marker:
        ax.plot(kl_bound(n), win_rate_bound(n), ls="none", marker="o", ms=3.0, mfc="none", color="0.35",
                label="bounds at the same n")
    ax.plot(kl, win, color="C0", lw=1.8, marker=marker, ms=3.5, label="exact: (KL(pi_n||pi_ref), win rate)")
    ax.plot(est, win, color="C1", lw=1.2, ls=":", label="paper's estimator: (E[KL_hat], win rate)")
    span = max(float(kl.max() - min(0.0, kl.min())), 1e-12)
    last = None
    for x in sorted({int(v) for v in np.unique(np.round(np.geomspace(1, n.size, min(6, n.size))) - 1)}):
        # label a point only if it stands apart from the last labelled one (clustered tails)
        if last is not None and abs(kl[x] - kl[last]) / span < 0.06 and abs(win[x] - win[last]) < 0.03:
            continue
        ax.annotate(f"n={int(n[x])}", (kl[x], win[x]), textcoords="offset points", xytext=(6, -10), fontsize=8,
                    color="C0")
        last = x
    ref = doc["reference"]
    ax.set_title(f"Best-of-n on {ref['source']} ({ref['outcomes']} outcomes, {ref['tie_classes']} distinct rewards)",
                 fontsize=10)
    ax.set_xlabel("KL(pi_n || pi_ref)  [nats]")
    ax.set_ylabel("win rate of pi_n against pi_ref (tie = 1/2)")
    ax.set_xlim(left=min(0.0, float(kl.min())))
    ax.set_ylim(0.45, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_png(fig, output)
