"""Solvers: each maps (reward, K, parameters) to a ``Solution`` (a table before certification).

exact (U-statistics) · minimax (Remez) · aqp (quadratic program) · plugin, digamma (baselines).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Solution:
    """A solved table: float64 values t_1..t_K and their high-precision/exact strings.

    ``exact``: the mean of the exact table equals r (bias ≡ 0 before rounding to float64).
    ``bias_target``: the solver's own promise on sup|b| (certified bound must meet it).
    ``params``: estimator parameters and solver diagnostics written to the file."""

    values: np.ndarray
    values_exact: list[str]
    params: dict = field(default_factory=dict)
    exact: bool = False
    bias_target: float | None = None
