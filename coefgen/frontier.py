"""The bias–variance frontier of AQP tables (issue 5): sweep τ, certify, plot.

``frontier_points(reward, K)`` returns one dict per table: the AQP tables for τ log-spaced
from 1.5 to 100 (``estimator: "aqp"``), and the baselines ``plugin``, ``digamma`` (kl only)
and ``minimax``. Every ``bias`` / ``mse`` / ``variance`` is a certified upper bound of the sup
over p ∈ [0, 1] (coefgen.certify) of the float64 table, except the minimax point's
``bias``, which is the minimax level E*_K itself. A τ for which no double-precision table
exists is reported with an ``error`` and no numbers.
"""

from __future__ import annotations

import numpy as np

from .errors import CoefgenError
from .rewards import KL, Reward


# The sweep solves and certifies 10 aqp tables plus the baselines: ~25 s at K = 64 on one core
# (~10 s at K = 32), growing faster than K; beyond the cap solve single tables (issue 20.7).
MAX_FRONTIER_K = 128


def check_frontier_K(K: int) -> None:
    """InputError naming MAX_FRONTIER_K when K exceeds it."""
    from .errors import InputError

    if K > MAX_FRONTIER_K:
        raise InputError(f"frontier: K = {K} exceeds the cap MAX_FRONTIER_K = {MAX_FRONTIER_K} (the sweep solves 10 aqp "
                         "tables, ~25 s at K = 64); at larger K solve single points with "
                         "`coefgen solve -e aqp --tau T`")


def default_taus(n: int = 10, lo: float = 1.5, hi: float = 100.0) -> list[float]:
    """n log-spaced values from lo to hi, rounded to 3 significant digits (stable names)."""
    return [float(f"{x:.3g}") for x in np.geomspace(lo, hi, n)]


def _cert_point(values, reward, estimator, level, **extra) -> dict:
    from .certify import certify

    cert = certify(np.asarray(values, dtype=float), reward)
    pt = {
        "estimator": estimator,
        "bias": float(cert.bias.upper),
        "mse": float(cert.mse.upper),
        "variance": float(cert.variance.upper),
    }
    if level > 0:
        pt["bias_over_level"] = float(cert.bias.upper) / level
    pt.update(extra)
    return pt


class Step:
    """One unit of a frontier sweep, for progress reporting (``table_id`` and ``cost()`` as a
    build's TableRequest, so coefgen.build.Progress can show it)."""

    def __init__(self, table_id: str, weight: float):
        self.table_id = table_id
        self.weight = weight

    def cost(self) -> float:
        return self.weight


def frontier_steps(reward: Reward, taus=None) -> list[Step]:
    """The steps frontier_points goes through, in order."""
    taus = default_taus() if taus is None else sorted(float(t) for t in taus)
    steps = [Step("minimax level E*_K", 0.5)] + [Step(f"aqp tau={t:g}", 1.5) for t in taus]
    steps += [Step("plugin", 0.05)] + ([Step("digamma", 0.05)] if isinstance(reward, KL) else [])
    return steps + [Step("minimax table", 1.0)]


def frontier_points(reward: Reward, K: int, taus=None, on_step=None) -> list[dict]:
    """AQP points for each τ (non-decreasing τ) plus plugin, digamma (kl) and minimax points.

    ``on_step(i, seconds, ok)`` is called after step i of ``frontier_steps(reward, taus)``."""
    import time

    from .solvers.aqp import solve_aqp
    from .solvers.baselines import solve_digamma, solve_plugin
    from .compiler import MINIMAX_SLACK
    from .solvers.minimax import minimax_level

    check_frontier_K(K)
    step = [0, time.perf_counter()]

    def done(ok=True):
        if on_step is not None:
            on_step(step[0], time.perf_counter() - step[1], ok)
        step[0] += 1
        step[1] = time.perf_counter()

    lv = minimax_level(reward, K)
    level = float(lv.upper)
    done()
    taus = default_taus() if taus is None else sorted(float(t) for t in taus)
    points: list[dict] = []
    for tau in taus:
        try:
            sol = solve_aqp(reward, K, tau=tau, level=level)
        except CoefgenError as e:
            points.append({"estimator": "aqp", "tau": tau, "error": str(e)})
            done(False)
            continue
        points.append(_cert_point(sol.values, reward, "aqp", level, tau=tau))
        done()
    points.append(_cert_point(solve_plugin(reward, K).values, reward, "plugin", level))
    done()
    if isinstance(reward, KL):
        points.append(_cert_point(solve_digamma(reward, K).values, reward, "digamma", level))
        done()
    mm = {"estimator": "minimax", "bias": level, "bias_over_level": 1.0}
    try:
        from .solvers.minimax import minimax_table

        c = _cert_point(minimax_table(reward, K)[0], reward, "minimax", level)
        if c["bias"] <= MINIMAX_SLACK * level:  # float64 kept the guarantee: the table is real
            mm.update({"mse": c["mse"], "variance": c["variance"]})
        else:
            mm["note"] = "not representable in float64 (certified bias of the rounded table exceeds 1.01 E*_K)"
    except CoefgenError:  # no minimax table: level only
        pass
    points.append(mm)
    done()
    return points


def plot_frontier(points: list[dict], path, title: str | None = None) -> None:
    """sup|b| (x) against sup m (y), both log axes: the AQP curve and the baselines marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    aqp = [p for p in points if p["estimator"] == "aqp" and "mse" in p]
    if aqp:
        xs = [p["bias"] for p in aqp]
        ys = [p["mse"] for p in aqp]
        ax.plot(xs, ys, "-o", color="C0", label="aqp (tau sweep)", zorder=3)
        for p in aqp:
            ax.annotate(f"τ={p['tau']:g}", (p["bias"], p["mse"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=7, color="C0")
    style = {"plugin": ("s", "C1"), "digamma": ("D", "C2"), "minimax": ("*", "C3")}
    for p in points:
        est = p["estimator"]
        if est not in style:
            continue
        marker, color = style[est]
        if "mse" in p:
            ax.plot([p["bias"]], [p["mse"]], marker, color=color, markersize=10 if est == "minimax" else 8,
                    label=est, zorder=4)
            ax.annotate(est, (p["bias"], p["mse"]), textcoords="offset points", xytext=(6, -10), fontsize=8,
                        color=color)
        else:
            ax.axvline(p["bias"], color=color, linestyle="--", linewidth=1, label=f"{est} level E*_K (no float64 table)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("certified sup_p |b(p)|  (weighted bias)")
    ax.set_ylabel("certified sup_p m(p)  (weighted MSE)")
    failed = [p["tau"] for p in points if p["estimator"] == "aqp" and "error" in p]
    t = title or "bias-variance frontier"
    if failed:
        t += f"\n(no double-precision table for tau = {', '.join(f'{x:g}' for x in failed)})"
    ax.set_title(t, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    from .plot import save_png

    save_png(fig, path)


__all__ = ["Step", "default_taus", "frontier_points", "frontier_steps", "plot_frontier"]
