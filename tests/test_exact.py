"""Exact U-statistic tables: exact rational identities and Monte Carlo agreement."""

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from coefgen.bernstein import bernstein_to_monomial, count_pmf, table_mean, u_statistic_table
from coefgen.errors import InputError
from coefgen.rewards import parse_reward
from coefgen.solvers.exact import exact_table, solve_exact


def bernstein_value(t, p: Fraction) -> Fraction:
    """T(p) = Σ t_c C(K−1, c−1) p^(c−1) (1−p)^(K−c), exactly."""
    K = len(t)
    return sum(tc * math.comb(K - 1, c - 1) * p ** (c - 1) * (1 - p) ** (K - c) for c, tc in enumerate(t, start=1))


@pytest.mark.parametrize("K", [2, 3, 5, 9, 16])
def test_u_statistic_identity_random_rational_polynomials(K):
    rng = random.Random(1000 + K)
    for _ in range(3):
        deg = rng.randint(0, K - 1)
        a = [Fraction(rng.randint(-50, 50), rng.randint(1, 12)) for _ in range(deg + 1)]
        t = u_statistic_table(a, K)
        # the Bernstein polynomial equals the reward at K+1 distinct rationals => identical (degree <= K-1)
        for j in range(K + 1):
            p = Fraction(j, K) if j < K else Fraction(1, 7)
            assert bernstein_value(t, p) == sum(aj * p**i for i, aj in enumerate(a))
        # and the monomial coefficients match exactly
        assert bernstein_to_monomial(t) == a + [Fraction(0)] * (K - 1 - deg)


def test_alpha3_closed_form():
    # r = (p^2 - 1)/2; U-statistic of p^2 is (c-1)(c-2)/((K-1)(K-2))
    K = 6
    t = exact_table(parse_reward("alpha:3"), K)
    assert t == [(Fraction((c - 1) * (c - 2), 20) - 1) / 2 for c in range(1, K + 1)]


def test_degree_too_high_names_smallest_K():
    with pytest.raises(InputError, match=r"needs K >= 4"):
        exact_table(parse_reward("poly:1,2,3,4"), 3)
    with pytest.raises(InputError, match="not a polynomial"):
        exact_table(parse_reward("kl"), 8)


@pytest.mark.parametrize("name,K", [("alpha:3", 8), ("euclidean", 4), ("poly:0.5,-1,0,2", 10)])
def test_monte_carlo_mean_matches_reward(name, K):
    reward = parse_reward(name)
    t = solve_exact(reward, K).values
    rng = np.random.default_rng(20261123)
    n = 200_000
    for p in (0.05, 0.3, 0.8):
        c = 1 + rng.binomial(K - 1, p, size=n)
        emp = t[c - 1].mean()
        pmf = count_pmf(K, p)[0]
        var = pmf @ t**2 - (pmf @ t) ** 2
        tol = 5 * math.sqrt(var / n) + 1e-12
        assert abs(emp - float(reward.r(np.array([p]))[0])) < tol
        # the float64 table mean agrees with the reward far more tightly
        assert abs(table_mean(t, p)[0] - reward.r(np.array([p]))[0]) < 1e-12
