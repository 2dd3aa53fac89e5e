"""``coefgen plot``: weighted bias b(p) and weighted variance v(p) of tables (DESIGN §4).

b(p) = p (T(p) − r(p)),  v(p) = p (E_p[t_c²] − T(p)²),  p on a log axis from 1e-6 to 1.
Certified bounds stated by the files are drawn as dashed lines in each curve's colour.
"""

from __future__ import annotations

import io

import numpy as np

from .bernstein import table_mean, table_second_moment
from .rewards import parse_reward
from .writers import write_atomic

P_MIN = 1e-6


def weighted_curves(payload: dict, p):
    """(b(p), v(p)) of a table payload on the float64 grid ``p``."""
    values = np.asarray(payload["values"], dtype=float)
    reward = parse_reward(payload["divergence"])
    T = table_mean(values, p)
    S = table_second_moment(values, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.asarray(reward.r(p), dtype=float)
    b = p * (T - r)
    v = np.maximum(p * (S - T * T), 0.0)
    return b, v


def _label(payload: dict) -> str:
    params = {k: v for k, v in payload.get("estimator_params", {}).items()
              if k != "solver" and v is not None}
    extra = ""
    if payload["estimator"] == "aqp" and params:
        extra = " (" + ", ".join(f"{k}={params[k]}" for k in sorted(params)) + ")"
    return f"{payload['divergence']}, K={payload['K']}, {payload['estimator']}{extra}"


def plot_tables(payloads: list, output: str, points: int = 800) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.logspace(np.log10(P_MIN), 0.0, points)
    fig, (ax_b, ax_v) = plt.subplots(2, 1, figsize=(8.5, 8.0), sharex=True, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    peaks = []
    for i, payload in enumerate(payloads):
        color = colors[i % len(colors)]
        b, v = weighted_curves(payload, p)
        label = _label(payload)
        ax_b.plot(p, b, color=color, lw=1.6, label=label)
        ax_v.plot(p, v, color=color, lw=1.6, label=label)
        peaks.append(float(np.max(v)))
        bias = _num(payload.get("bias_bound"))
        if bias is not None and bias > 0:
            ax_b.axhline(bias, color=color, ls="--", lw=1.0, alpha=0.8)
            ax_b.axhline(-bias, color=color, ls="--", lw=1.0, alpha=0.8)
        var = _num(payload.get("variance_bound"))
        if var is not None and var > 0:
            ax_v.axhline(var, color=color, ls="--", lw=1.0, alpha=0.8)
    ax_b.axhline(0.0, color="0.5", lw=0.6)
    ax_b.set_xscale("log")
    ax_b.set_xlim(P_MIN, 1.0)
    ax_b.set_ylabel("weighted bias  b(p) = p (T(p) - r(p))")
    ax_b.set_title("Weighted bias (dashed: certified ±bias_bound)")
    ax_v.set_ylabel("weighted variance  v(p) = p Var_p(t_c)")
    ax_v.set_xlabel("p = probability of the sample's answer")
    ax_v.set_title("Weighted variance (dashed: certified variance_bound)")
    positive = [x for x in peaks if x > 0]
    if positive and max(positive) > 20 * min(positive):
        # curves of very different sizes: a log axis shows every one of them
        ax_v.set_yscale("log")
        ax_v.set_ylim(max(positive) * 1e-6, max(positive) * 2)
        ax_v.set_title("Weighted variance, log scale (dashed: certified variance_bound)")
    else:
        ax_v.set_ylim(bottom=0.0)
    for ax in (ax_b, ax_v):
        ax.grid(True, which="major", alpha=0.3)
    ax_b.legend(fontsize=8, loc="best")
    save_png(fig, output)


def _num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def save_png(fig, output: str) -> None:
    """Render a matplotlib figure to PNG bytes (no software/date metadata: the same figure gives
    the same bytes) and write them atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    write_atomic(output, buf.getvalue())
