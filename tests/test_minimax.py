"""Minimax level E*_K and minimax tables (issue 4)."""

from __future__ import annotations

import math
from decimal import Decimal

import mpmath
import numpy as np
import pytest

from coefgen.errors import CheckError, InputError
from coefgen.rewards import parse_reward
from coefgen.solvers.minimax import Level, minimax_level, minimax_table

# DESIGN §5 public checkpoints (kl)
E2 = "0.077201992466760330918"
E8 = "0.0050605659819431720875"


def _rel(a, b):
    return abs(mpmath.mpf(a) - mpmath.mpf(b)) / abs(mpmath.mpf(b))


@pytest.mark.parametrize("K,ref", [(2, E2), (8, E8)])
def test_kl_checkpoints_to_20_digits(K, ref):
    L = minimax_level("kl", K)
    assert isinstance(L, Level)
    assert L.divergence == "kl" and L.K == K
    assert L.digits >= 20
    with mpmath.workdps(50):
        # the published values are truncated after 20 significant digits
        sig = lambda s: s.replace("0.", "", 1).lstrip("0")  # noqa: E731
        assert sig(L.level)[:20] == sig(ref)[:20]
        assert _rel(L.level, ref) < 2e-19
        assert L.lower <= L.upper
        # truncated reference: ref ≤ E* < ref + one unit in its last digit
        unit = mpmath.mpf(10) ** (mpmath.floor(mpmath.log10(mpmath.mpf(ref))) - 19)
        assert mpmath.mpf(ref) <= L.upper
        assert L.lower <= mpmath.mpf(ref) + unit


def test_kl_K2_independent_solve():
    """K = 2 by Newton on the 5 equioscillation equations (mpmath, independent of coefgen)."""
    mpmath.mp.dps = 50
    try:
        f = lambda p: p * mpmath.log(p)  # noqa: E731

        def eqs(a, b, E, x0, x1):
            e = lambda p: a * p + b * p * p - f(p)  # noqa: E731
            de = lambda p: a + 2 * b * p - mpmath.log(p) - 1  # noqa: E731
            return [e(x0) - E, e(x1) + E, e(1) - E, de(x0), de(x1)]

        sol = mpmath.findroot(eqs, [0.5, -0.5, 0.0772, 0.0925, 0.628])
        L = minimax_level("kl", 2, digits=30)
        assert L.digits >= 30
        assert L.lower <= sol[2] <= L.upper
    finally:
        mpmath.mp.dps = 15


def test_kl_K2E_increasing_below_033():
    vals = []
    for K in (16, 32, 64):
        L = minimax_level("kl", K)
        assert L.digits >= 20
        vals.append(K * K * L.upper)
    assert vals[0] < vals[1] < vals[2] < 0.33


def _check_reference_and_bracket(name, K, ngrid=4000):
    """The minimax table's exact strings alternate on the level's reference with |b| inside the
    proven bracket, and a dense sample never exceeds the proven upper bound (mpmath, 60 digits:
    independent of the arb machinery that produced the level)."""
    reward = parse_reward(name)
    L = minimax_level(reward, K)
    assert L.digits >= 20
    assert len(L.reference) == K + 1
    assert list(L.reference) == sorted(L.reference)
    assert L.reference[-1] == 1 and L.reference[0] > 0
    assert L.lower <= L.upper
    assert L.digits == math.floor(-mpmath.log10((L.upper - L.lower) / L.upper))
    values, exact, L2 = minimax_table(reward, K)
    assert L2 == L
    assert len(values) == K and len(exact) == K
    assert all(len(s.replace("-", "").replace(".", "").lstrip("0")) >= 30 for s in exact)
    # The level belongs to the exact P; values_exact are its Bernstein coefficients β_c rounded
    # to their last printed digit (ulp_c = 10^exponent of the string), from balls of radius
    # ≤ 10^-36·|β_c| (minimax_table's acceptance test). The Bernstein basis is nonnegative and
    # sums to 1, so the strings' polynomial moves b by at most p·max_c|β_c − s_c| ≤ Δ.
    delta = max(
        mpmath.mpf(10) ** Decimal(s).as_tuple().exponent / 2 + abs(mpmath.mpf(s)) * mpmath.mpf(10) ** -35
        for s in exact
    )
    with mpmath.workdps(60):
        t = [mpmath.mpf(s) for s in exact]
        n = K - 1
        # 60-digit evaluation error of the Bernstein sum (terms ≤ max|t_c|)
        tol = delta + max(abs(x) for x in t) * K * mpmath.mpf(10) ** -55
        assert tol < L.upper * 1e-20  # so the checks below still test the level to 20 digits (the default)

        def b(p):
            T = sum(t[c] * math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(K))
            return p * T - reward.f_mp(p)

        errs = [b(p) for p in L.reference]
        for i, e in enumerate(errs):
            assert abs(e) >= L.lower - tol
            assert abs(e) <= L.upper + tol
            if i:
                assert (e > 0) != (errs[i - 1] > 0)
        # the sup over a dense sample never exceeds the proven upper bound
        grid = [mpmath.mpf(k) / ngrid for k in range(1, ngrid + 1)] + [mpmath.mpf(10) ** -k for k in range(4, 40, 3)]
        assert max(abs(b(p)) for p in grid) <= L.upper + tol
    # float64 values are the rounded exact strings
    assert np.array_equal(values, np.array([float(s) for s in exact]))


def test_reference_alternates_and_bracket():
    _check_reference_and_bracket("kl", 32)


@pytest.mark.parametrize("name,K", [("alpha:0.6", 16), ("alpha:0.9", 16), ("alpha:1.3", 12), ("alpha:2.2", 14)])
def test_non_dyadic_alpha_levels_certify(name, K):
    """Issue 13.1: a non-dyadic exponent stays exact at every working precision (it used to be
    frozen into a 53-bit ball, and certification failed from K ≈ 10-16)."""
    _check_reference_and_bracket(name, K, ngrid=400)


@pytest.mark.parametrize("name", ["alpha:0.3", "alpha:0.45"])
def test_small_alpha_minimax_K8(name):
    L = minimax_level(name, 8)
    assert L.digits >= 20  # was a silent 7-digit bracket for alpha:0.45
    _check_reference_and_bracket(name, 8, ngrid=400)


def test_level_missing_requested_digits_fails(monkeypatch):
    """A bracket that stays wider than the requested digits raises CheckError (never returned silently)."""
    import coefgen.solvers.minimax as mm

    real = mm._certify

    def widened(lev, K, cbits):
        out = real(lev, K, cbits)
        if isinstance(out, tuple) and len(out) == 4:
            lower, upper, ref, width = out
            return lower, upper * (1 + mpmath.mpf(10) ** -8), ref, width
        return out

    monkeypatch.setattr(mm, "_certify", widened)
    mm._solve.cache_clear()
    mm._level_cached.cache_clear()
    try:
        with pytest.raises(CheckError, match="only 8 significant digits, 20 were requested"):
            minimax_level("alpha:0.7", 9)
    finally:
        mm._solve.cache_clear()
        mm._level_cached.cache_clear()


@pytest.mark.parametrize("a", ["0.5", "1.5"])
def test_alpha_rate(a):
    Ks = [16, 32, 64, 128]
    E = [float(minimax_level(f"alpha:{a}", K, digits=12).upper) for K in Ks]
    assert all(E[i + 1] < E[i] for i in range(len(E) - 1))
    slope = np.polyfit(np.log(Ks), np.log(E), 1)[0]
    target = -2 * float(a)
    assert abs(slope - target) <= 0.1 * abs(target)


def test_alpha_non_integer_and_large_integer_levels():
    L = minimax_level("alpha:2.5", 64)
    assert L.digits >= 20 and 0 < L.lower <= L.upper
    # alpha:5 at K = 3 is a polynomial of degree 4 > K − 1: a genuine minimax problem
    L = minimax_level("alpha:5", 3)
    assert L.digits >= 20 and L.lower > 0


def test_bad_input():
    with pytest.raises(InputError):
        minimax_level("kl", 1)
    with pytest.raises(InputError):
        minimax_level("kl", 0)
    with pytest.raises(InputError):
        minimax_table("kl", 1)
    with pytest.raises(InputError):
        minimax_level("alpha:-1", 8)
    with pytest.raises(InputError):
        minimax_level("kl", 8, digits=0)


def test_polynomial_reward_level_zero():
    L = minimax_level("alpha:3", 8)  # r = (p² − 1)/2, degree 2 ≤ K − 1
    assert L.level == "0" and L.lower == 0 and L.upper == 0
    values, exact, _ = minimax_table("euclidean", 4)
    assert exact == ["-1", "-2/3", "-1/3", "0"]
    assert list(values) == [-1.0, -2 / 3, -1 / 3, 0.0]
    L = minimax_level("poly:1,2,3", 3)
    assert L.level == "0"


def test_digits_request_is_honoured():
    L = minimax_level("kl", 16, digits=40)
    assert L.digits >= 40
    L20 = minimax_level("kl", 16)
    with mpmath.workdps(60):
        assert _rel(L.level, L20.level) < 1e-19


@pytest.mark.parametrize("name,K", [("kl", 2), ("kl", 8), ("kl", 100), ("kl", 300), ("alpha:0.5", 16), ("alpha:3/2", 40)])
def test_level_estimate_lies_just_below_the_proven_level(name, K):
    """The float64 estimate the aqp bias budget is solved with: below the proven lower end of
    the bracket (so every τ·estimate budget is within τ·E*_K), and within 1e-8 of it."""
    from coefgen.solvers.minimax import LEVEL_ESTIMATE_DIGITS, level_estimate

    est = level_estimate(name, K)
    L = minimax_level(name, K)
    assert 0 < est <= L.lower
    assert (L.lower - est) / L.lower < 1e-8
    mantissa = f"{est:.17e}".split("e")[0].replace(".", "").rstrip("0")
    assert len(mantissa) <= LEVEL_ESTIMATE_DIGITS or float(f"{est:.{LEVEL_ESTIMATE_DIGITS - 1}e}") == est
    assert level_estimate("poly:0,1,1", 4) == 0.0  # degree <= K - 1: E*_K = 0


@pytest.mark.parametrize("K", [3, 9, 17])
def test_bernstein_coefficients_agree_with_the_u_statistic_sum(K):
    """The Taylor-shift conversion of the levelled q to Bernstein coefficients agrees, ball by
    ball, with the U-statistic sum β_c = Σ_k a_k C(c, k)/C(K − 1, k) evaluated term by term."""
    from flint import arb

    from coefgen.solvers.minimax import _bernstein_coefficients, _prec, _solve

    _lo, _up, _ref, _d, lev, prec = _solve("kl", K, 20)
    with _prec(prec + 2 * K + 64):
        beta = _bernstein_coefficients(lev, K)
        a = lev.p_monomials().coeffs()
        a += [arb(0)] * (K - len(a))
        n = K - 1
        for c in range(K):
            direct = sum((a[k] * math.comb(c, k) / math.comb(n, k) for k in range(c + 1)), arb(0))
            assert beta[c].overlaps(direct)
            assert float(abs(beta[c] - direct).upper()) < 1e-25 * max(1.0, float(abs(direct).upper()))
        # and q(p) = Σ β_c C(n, c) p^c (1 − p)^(n − c) at a few points
        for x in (arb(1) / 7, arb(1) / 2, arb(9) / 10):
            qx = lev.eval_q([x], 0)[0][0]
            bern = sum((beta[c] * math.comb(n, c) * x**c * (1 - x) ** (n - c) for c in range(K)), arb(0))
            assert qx.overlaps(bern)
