"""Parameters of the aqp estimator: validation and canonical form (no numerics imported,
so that checking a table-set spec stays fast)."""

from __future__ import annotations

import math

from ..errors import InputError

DEFAULT_TAU = 10
OBJECTIVES = ("worst", "mean")


def _number(x, what):
    if isinstance(x, bool):
        raise InputError(f"{what}, got {x!r}")
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            raise InputError(f"{what}, got {x!r}") from None
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{what}, got {x!r}") from None
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
            max_mse = _canon(v)
        if objective != "worst":
            raise InputError("aqp: objective 'mean' cannot be combined with max_mse (max_mse bounds the worst-case sup m)")
        return {"tau": None, "objective": "worst", "max_mse": max_mse}
    if tau is None:
        tau = DEFAULT_TAU
    t = _number(tau, "aqp: tau must be a number >= 1")
    if t < 1:
        raise InputError(f"aqp: tau must be a number >= 1, got {tau!r} (no table has bias below the minimax level E*_K)")
    return {"tau": _canon(t), "objective": objective, "max_mse": None}
