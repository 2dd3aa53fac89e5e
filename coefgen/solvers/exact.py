"""The exact table: U-statistics of a polynomial reward (DESIGN §2, §5 ``exact``).

r(p) = Σ_j a_j p^j, degree ≤ K−1  ⇒  t_c = Σ_{j ≤ c−1} a_j C(c−1, j)/C(K−1, j), bias ≡ 0.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..bernstein import u_statistic_table
from ..errors import InputError
from ..rewards import Reward
from . import Solution

# K x (degree + 1) rational U-statistic terms (computed twice: the table and its certificate, and
# again by verify): ~10 s at the cap (512 x 512 on one core), growing faster than linearly with
# the size of the rationals; a 2048-coefficient poly at K = 2048 would take minutes (issue 20.7).
MAX_EXACT_WORK = 1 << 18


def exact_table_degree_check(reward: Reward, K: int) -> tuple:
    """The reward's monomial coefficients if an exact table exists for K, else InputError."""
    coeffs = reward.poly_coefficients
    if coeffs is None:
        raise InputError(
            f"divergence {reward.name!r} is not a polynomial reward: no unbiased table exists; "
            "use --estimator minimax or aqp"
        )
    degree = len(coeffs) - 1
    if degree > K - 1:
        raise InputError(
            f"divergence {reward.name!r} has degree {degree} > K-1 = {K - 1}: "
            f"an exact table needs K >= {degree + 1}"
        )
    work = K * (degree + 1)
    if work > MAX_EXACT_WORK:
        raise InputError(
            f"divergence {reward.name[:60]!r}: an exact table of degree {degree} at K = {K} needs K x (degree + 1) = "
            f"{work} rational terms, over the cap MAX_EXACT_WORK = {MAX_EXACT_WORK} (~10 s); lower K or the degree"
        )
    return coeffs


def exact_table(reward: Reward, K: int) -> list[Fraction]:
    """Exact rational table t_1..t_K of a polynomial reward; InputError if impossible."""
    return u_statistic_table(exact_table_degree_check(reward, K), K)


def solve_exact(reward: Reward, K: int) -> Solution:
    table = exact_table(reward, K)
    return Solution(
        values=np.array([float(x) for x in table]),
        values_exact=[f"{x.numerator}/{x.denominator}" for x in table],
        exact=True,
        bias_target=0.0,
    )
