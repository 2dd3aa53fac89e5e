"""Pure functions on tables seen as Bernstein coefficient vectors (DESIGN §2).

A table t_1..t_K has mean T(p) = Σ_c t_c B_c(p), B_c(p) = C(K−1, c−1) p^(c−1) (1−p)^(K−c),
the law of the count c of a sample whose answer has probability p.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.special import gammaln


def log_binomial_coefficients(n: int) -> np.ndarray:
    """log C(n, j) for j = 0..n, float64 (from exact integers, correctly rounded logs)."""
    # math.log of a Python int is accurate for any size (no float overflow)
    return np.array([math.log(math.comb(n, j)) for j in range(n + 1)])


def bernstein_basis(n: int, p) -> np.ndarray:
    """Matrix B[i, j] = C(n, j) p_i^j (1 − p_i)^(n − j), j = 0..n, for float64 p in [0, 1]."""
    p = np.atleast_1d(np.asarray(p, dtype=float))
    j = np.arange(n + 1)
    logc = gammaln(n + 1) - gammaln(j + 1) - gammaln(n - j + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(p)[:, None]
        lq = np.log1p(-p)[:, None]
        expo = logc[None, :] + j[None, :] * lp + (n - j)[None, :] * lq
        # j·log p with p = 0 and j = 0 is 0·(−inf) = nan; the true term is 1.
        expo = np.where((j[None, :] == 0) & (p[:, None] == 0), logc[None, :] + (n - j)[None, :] * lq, expo)
        expo = np.where((j[None, :] == n) & (p[:, None] == 1), logc[None, :] + j[None, :] * lp, expo)
        out = np.exp(expo)
    return out


def count_pmf(K: int, p) -> np.ndarray:
    """P(c | p) for c = 1..K: column c−1 of the Bernstein basis of degree K − 1."""
    return bernstein_basis(K - 1, p)


def table_mean(values, p) -> np.ndarray:
    """T(p) = E_p[t_c] = Σ_c t_c B_c(p) for float64 p (vectorised)."""
    t = np.asarray(values, dtype=float)
    return count_pmf(len(t), p) @ t


def table_second_moment(values, p) -> np.ndarray:
    """S(p) = E_p[t_c²]."""
    t = np.asarray(values, dtype=float)
    return count_pmf(len(t), p) @ (t * t)


def u_statistic_table(coefficients, K: int) -> list[Fraction]:
    """Exact table whose mean is Σ_j a_j p^j (degree ≤ K−1).

    t_c = Σ_{j ≤ c−1} a_j · C(c−1, j) / C(K−1, j)  (the U-statistic of p^j)."""
    a = [Fraction(x) for x in coefficients]
    if len(a) > K:
        if any(x != 0 for x in a[K:]):
            raise ValueError("degree exceeds K-1")
        a = a[:K]
    out = []
    for c in range(1, K + 1):
        s = Fraction(0)
        for j in range(min(c, len(a))):
            if a[j]:
                s += a[j] * Fraction(math.comb(c - 1, j), math.comb(K - 1, j))
        out.append(s)
    return out


def bernstein_to_monomial(values) -> list[Fraction]:
    """Exact monomial coefficients of T(p) from exact (rational) table entries.

    Inverse of ``u_statistic_table``: T(p) = Σ_c t_c C(n, c−1) p^(c−1) Σ_i C(n−c+1, i)(−p)^i."""
    t = [Fraction(x) for x in values]
    n = len(t) - 1
    a = [Fraction(0)] * (n + 1)
    for k, tk in enumerate(t):
        if not tk:
            continue
        ck = math.comb(n, k)
        for i in range(n - k + 1):
            a[k + i] += tk * ck * math.comb(n - k, i) * (-1) ** i
    return a
