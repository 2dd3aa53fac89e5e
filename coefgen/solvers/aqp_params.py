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
    except (TypeError, ValueError):
        raise InputError(f"{what}, got {str(x)[:64]!r}") from None
    if not math.isfinite(x):
        raise InputError(f"{what}, got {x!r}")
    return x


def _canon(x: float):
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def normalize_aqp_params(params: dict) -> dict:
    """Validate and canonicalise {tau, objective, max_mse}; InputError with a one-line reason."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"tau", "objective", "max_mse"})
    if unknown:
        raise InputError(f"estimator 'aqp' has no parameter {unknown[0]!r} (parameters: tau, objective, max_mse)")
    tau = params.get("tau", DEFAULT_TAU)
    objective = params.get("objective", "worst")
    max_mse = params.get("max_mse", None)
    if objective is None:
        objective = "worst"
    if objective not in OBJECTIVES:
        raise InputError(f"aqp: objective must be worst or mean, got {objective!r}")
    if max_mse is not None:
        if isinstance(max_mse, str) and max_mse.strip().lower() == "plugin":
            max_mse = "plugin"
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
