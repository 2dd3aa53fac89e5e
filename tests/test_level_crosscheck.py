"""Independent check of the minimax level: a linear program on a dense grid.

The discrete minimax value h_N over any finite grid is ≤ E*_K (fewer constraints), and on a
fine grid clustered like the extrema it is within O(spacing²) of E*_K. The LP (HiGHS, Bernstein
basis) shares no code with the Remez solver."""

import numpy as np
import pytest
from scipy.optimize import linprog

from coefgen.bernstein import count_pmf
from coefgen.rewards import parse_reward
from coefgen.solvers.minimax import minimax_level


def lp_level(reward, K, n=6000):
    x = np.sin(np.linspace(0, np.pi / 2, n)) ** 2  # clustered at both ends of [0, 1]
    p = np.unique(np.concatenate([x ** 2, np.linspace(0, 1, n)]))[1:]  # dense near 0 (extrema ~ 1/K^2)
    A = p[:, None] * count_pmf(K, p)  # p * B_c(p): b(p) = A t - f(p)
    f = reward.f(p)
    ones = np.ones((len(p), 1))
    # variables (t_1..t_K, h): minimise h s.t.  A t - h <= f,  -A t - h <= -f
    A_ub = np.block([[A, -ones], [-A, -ones]])
    b_ub = np.concatenate([f, -f])
    c = np.zeros(K + 1)
    c[-1] = 1
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * (K + 1), method="highs", options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    assert res.status == 0
    return res.x[-1]


@pytest.mark.parametrize("name,K", [("kl", 5), ("kl", 8), ("kl", 12), ("alpha:0.5", 6), ("alpha:2.5", 7)])
def test_level_agrees_with_independent_lp(name, K):
    reward = parse_reward(name)
    lev = minimax_level(reward, K)
    h = lp_level(reward, K)
    lower, upper = float(lev.lower), float(lev.upper)
    assert lower <= upper
    assert h <= upper * (1 + 1e-9)          # discrete minimax never exceeds the continuous one
    assert h >= lower * (1 - 2e-5)          # and the grid is fine enough to come close
