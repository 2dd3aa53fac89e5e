"""Parameters of the aqp estimator: validation and canonical form (no numerics imported,
so that checking a table-set spec stays fast)."""

from __future__ import annotations

import math
import re

from ..errors import InputError

DEFAULT_TAU = 10
OBJECTIVES = ("worst", "mean")
# Stated ranges. tau above 1e4 asks for a bias budget beyond any useful table (tau = 1e6
# failed in double precision); a V above 1e6 is far beyond the sup m of any useful table
# (kl: ~0.05) and drove the cone solver into InsufficientProgress at 1e308.
TAU_RANGE = (1, 10_000)
MAX_MSE_RANGE = (0, 1e6)  # 0 < V <= 1e6
_ASCII_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?", re.ASCII)


def _number(x, what):
    if isinstance(x, bool):
        raise InputError(f"{what}, got {x!r}")
    if isinstance(x, str):
        if len(x) > 64 or not _ASCII_NUMBER.fullmatch(x.strip()):  # float() also reads e.g. '١' or '３'
            raise InputError(f"{what}, got {x[:64]!r}")
        x = float(x)
    try:
        x = float(x)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float64
        raise InputError(f"{what}, got {str(x)[:64]!r}") from None
    if not math.isfinite(x):
        raise InputError(f"{what}, got {x!r}")
    return x


def _canon(x: float):
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def normalize_aqp_params(params: dict) -> dict:
    """Validate and canonicalise {tau, objective, max_mse, gamma, monotone}; InputError with a one-line reason."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"tau", "objective", "max_mse", "gamma", "monotone"})
    if unknown:
        raise InputError(f"estimator 'aqp' has no parameter {unknown[0]!r} "
                         "(parameters: tau, objective, max_mse, gamma, monotone)")
    extra = _game_params(params)
    params.pop("gamma", None)
    params.pop("monotone", None)
    base = _normalize_base(params)
    if extra["gamma"] != 1 and base["max_mse"] is None:
        raise InputError("aqp: gamma (the bias weight p^gamma) needs max_mse (the table minimises sup p^gamma|T - r| "
                         "under sup m <= max_mse)")
    return {**base, **extra}


def _game_params(params: dict) -> dict:
    """gamma ∈ (0, 1] (bias weight p^gamma; 1 = DESIGN's p-weighted bias), monotone (t_1 <= ... <= t_K)."""
    gamma = params.get("gamma", 1)
    gamma = 1 if gamma is None else gamma
    g = _number(gamma, "aqp: gamma must be a number in (0, 1]")
    if not 0 < g <= 1:
        raise InputError(f"aqp: gamma must be a number in (0, 1], got {gamma!r}")
    monotone = params.get("monotone", False)
    monotone = False if monotone is None else monotone
    if isinstance(monotone, str) and monotone.strip().lower() in ("true", "false"):
        monotone = monotone.strip().lower() == "true"
    if not isinstance(monotone, bool):
        raise InputError(f"aqp: monotone must be true or false, got {monotone!r}")
    return {"gamma": _canon(g), "monotone": monotone}


def plugin_factor(max_mse) -> float | None:
    """The factor k of a canonical max_mse 'plugin' (k = 1) or '<k>plugin', else None."""
    if isinstance(max_mse, str) and max_mse.endswith("plugin"):
        head = max_mse[: -len("plugin")]
        return float(head) if head else 1.0
    return None


def _plugin_multiple(text: str) -> str:
    """'plugin', '10plugin', '10*plugin', '2.5 x plugin' → canonical 'plugin' / '10plugin' / '2.5plugin'."""
    head = text.strip().lower()[: -len("plugin")].strip().rstrip("*x").strip()
    if not head:
        return "plugin"
    k = _number(head, "aqp: max_mse must be positive, 'plugin' or '<k>plugin' (k times the plug-in's sup m)")
    if not k >= 1:
        raise InputError(f"aqp: max_mse '<k>plugin' needs k >= 1, got {text!r}")
    k = _canon(k)
    return "plugin" if k == 1 else f"{k}plugin"


def _normalize_base(params: dict) -> dict:
    tau = params.get("tau", DEFAULT_TAU)
    objective = params.get("objective", "worst")
    max_mse = params.get("max_mse", None)
    if objective is None:
        objective = "worst"
    if objective not in OBJECTIVES:
        raise InputError(f"aqp: objective must be worst or mean, got {objective!r}")
    if max_mse is not None:
        if isinstance(max_mse, str) and max_mse.strip().lower().endswith("plugin"):
            max_mse = _plugin_multiple(max_mse)
        else:
            v = _number(max_mse, "aqp: max_mse must be positive or 'plugin'")
            if v <= 0:
                raise InputError(f"aqp: max_mse must be positive or 'plugin', got {max_mse!r}")
            if v > MAX_MSE_RANGE[1]:
                raise InputError(f"aqp: max_mse = {v:g} is outside the supported range 0 < V <= {MAX_MSE_RANGE[1]:g} "
                                 "(far above the worst-case MSE of any useful table)")
            max_mse = _canon(v)
        if objective != "worst":
            raise InputError("aqp: objective 'mean' cannot be combined with max_mse (max_mse bounds the worst-case sup m)")
        return {"tau": None, "objective": "worst", "max_mse": max_mse}
    if tau is None:
        tau = DEFAULT_TAU
    t = _number(tau, "aqp: tau must be a number >= 1")
    if t < 1:
        raise InputError(f"aqp: tau must be a number >= 1, got {tau!r} (no table has bias below the minimax level E*_K)")
    if t > TAU_RANGE[1]:
        raise InputError(f"aqp: tau = {t:g} is outside the supported range {TAU_RANGE[0]} <= tau <= {TAU_RANGE[1]} "
                         "(a bias budget beyond any useful table)")
    return {"tau": _canon(t), "objective": objective, "max_mse": None}


def check_aqp_reward(reward, params: dict) -> None:
    """InputError when the aqp problem is void or degenerate for this reward (before solving).

    alpha:a, a < 1: r(p) = (1 − p^(a−1))/(1 − a). In m(p) = p·Σ_c B_c(p)(t_c − r(p))² the
    c = 1 term is p(1 − p)^(K−1)(t_1 − r)² with p·r² = (p − 2p^a + p^(2a−1))/(1 − a)² and
    p·r → 0, and every term c ≥ 2 is O(p^(c−2+2a)) → 0, so

        lim_{p→0} m(p) = lim p^(2a−1)/(1 − a)² = ∞ (a < 1/2),  4 (a = 1/2),  0 (a > 1/2)

    for EVERY table. a < 1/2: sup m = ∞ for every table, so the worst-case objective and a
    max_mse budget are void. a = 1/2: m(p) = 4 + 4(t_1 − 2)√p + O(p), so sup m ≥ 4 for every
    table and = 4 for every table whose m stays ≤ 4 on (0, 1]: the worst-case objective is
    flat over that whole set and its optimum is not unique (refused; a max_mse budget V ≥ 4
    is a proper problem and is kept: least bias among the tables with sup m ≤ V).
    ∫₀¹ m dp is finite for every a > 0 (p^(2a−1) is integrable): objective 'mean' is always
    available."""
    from fractions import Fraction

    a = getattr(reward, "a", None)
    if a is None or getattr(reward, "poly_coefficients", None) is not None:
        return
    a = Fraction(a)
    if params.get("objective") == "mean" and params.get("max_mse") is None:
        return
    has_v = params.get("max_mse") is not None
    what = "max_mse" if has_v else "objective 'worst'"
    if reward.mse_sup_infinite:
        raise InputError(
            f"aqp {reward.name}: {what} is void: sup_p m(p) is infinite for every table when a < 1/2 "
            f"(p*r(p)^2 ~ p^(2a-1) -> inf as p -> 0); use --objective mean (the integral of m is finite)"
        )
    if 2 * a == 1 and not has_v:
        raise InputError(
            f"aqp {reward.name}: objective 'worst' is degenerate: every table has sup_p m(p) >= lim_(p->0) m(p) = 4, "
            f"with equality for every table whose m stays <= 4, so the optimum is not unique; use --objective mean "
            f"(or --max-mse V with V >= 4, e.g. plugin)"
        )
