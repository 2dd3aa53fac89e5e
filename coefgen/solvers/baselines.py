"""Baseline tables, for comparison only (DESIGN §5).

plugin: t_c = r(c/K).   digamma (kl only): t_c = ψ(c) − ψ(K), mean log p + Σ_{v≥K} (1−p)^v/v.
"""

from __future__ import annotations

import mpmath
import numpy as np

from ..errors import InputError
from ..rewards import KL, Reward
from . import Solution

EXACT_DIGITS = 34


def _solution(entries) -> Solution:
    values = np.array([float(x) for x in entries])
    return Solution(values=values, values_exact=[mpmath.nstr(x, EXACT_DIGITS, min_fixed=1, max_fixed=0) for x in entries])


def plugin_entries(reward: Reward, K: int) -> list:
    """t_c = r(c/K) in high precision."""
    with mpmath.workdps(EXACT_DIGITS + 10):
        return [reward.r_mp(mpmath.mpf(c) / K) for c in range(1, K + 1)]


def digamma_entries(K: int) -> list:
    """t_c = ψ(c) − ψ(K) = −Σ_{j=c}^{K−1} 1/j (exact harmonic differences)."""
    with mpmath.workdps(EXACT_DIGITS + 10):
        return [mpmath.digamma(c) - mpmath.digamma(K) for c in range(1, K + 1)]


def solve_plugin(reward: Reward, K: int) -> Solution:
    return _solution(plugin_entries(reward, K))


def require_kl(reward: Reward) -> None:
    """The digamma table estimates log p only."""
    if not isinstance(reward, KL):
        raise InputError(f"estimator 'digamma' is defined for kl only, not {reward.name!r}")


def solve_digamma(reward: Reward, K: int) -> Solution:
    require_kl(reward)
    return _solution(digamma_entries(K))
