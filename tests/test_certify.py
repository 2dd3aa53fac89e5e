"""Tests of coefgen.certify against independent dense / exact evaluations."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from scipy.special import digamma
from scipy.stats import binom

from coefgen.bernstein import bernstein_to_monomial, u_statistic_table
from coefgen.certify import Bracket, Certificate, certify, check_claims
from coefgen.rewards import parse_reward

KL = parse_reward("kl")


# ----------------------------------------------------------------------------- helpers
def dense_float(t, reward, p):
    """|b|, v, m on the points p, float64, via scipy's binomial pmf (independent code)."""
    t = np.asarray(t, dtype=float)
    K = len(t)
    B = binom.pmf(np.arange(K)[None, :], K - 1, p[:, None])
    T = B @ t
    r = reward.r(p)
    b = p * (T - r)
    # Var = E[D²] − E[D]² with D = t − t_j (j the most likely count): no cancellation
    # against a large common level of the entries
    D = t[None, :] - t[np.argmax(B, axis=1)][:, None]
    ED = np.einsum("ij,ij->i", B, D)
    v = p * np.maximum(np.einsum("ij,ij->i", B, D * D) - ED * ED, 0.0)
    m = p * np.einsum("ij,ij->i", B, (t[None, :] - r[:, None]) ** 2)
    return np.abs(b), v, m


def mp_funcs(t, reward, p):
    """|b|, v, m at p in 40-digit mpmath (independent of the certifier's code)."""
    with mpmath.workdps(40):
        p = mpmath.mpf(p)
        K = len(t)
        B = [mpmath.binomial(K - 1, j) * p**j * (1 - p) ** (K - 1 - j) for j in range(K)]
        tm = [mpmath.mpf(float(x)) for x in t]
        T = sum(x * y for x, y in zip(tm, B))
        r = reward.r_mp(p)
        b = abs(p * (T - r))
        v = p * sum((x - T) ** 2 * y for x, y in zip(tm, B))
        m = p * sum((x - r) ** 2 * y for x, y in zip(tm, B))
        return b, v, m


def refine_max(fun, lo, hi, iters=60):
    """Golden-section maximisation of a (locally unimodal) mpmath function on [lo, hi]."""
    with mpmath.workdps(40):
        g = (mpmath.sqrt(5) - 1) / 2
        a, b = mpmath.mpf(lo), mpmath.mpf(hi)
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = fun(c), fun(d)
        for _ in range(iters):
            if fc > fd:
                b, d, fd = d, c, fc
                c = b - g * (b - a)
                fc = fun(c)
            else:
                a, c, fc = c, d, fd
                d = a + g * (b - a)
                fd = fun(d)
        return max(fc, fd, fun(lo), fun(hi))


def dense_grid(n_log=50_000, n_lin=50_000, lo=1e-14):
    return np.unique(np.concatenate([np.geomspace(lo, 0.05, n_log), np.linspace(0, 1, n_lin)[1:]]))


def assert_brackets_contain_dense_max(t, reward, cert: Certificate):
    p = dense_grid()
    vals = dense_float(t, reward, p)
    for g, br in enumerate((cert.bias, cert.variance, cert.mse)):
        assert 0 <= br.lower <= br.upper
        assert br.rel_gap <= 1e-6, (g, br)
        assert np.max(vals[g]) <= br.upper * (1 + 1e-12), (g, np.max(vals[g]), br)
        # refine the dense maximum in high precision: it must lie inside the bracket
        i = int(np.argmax(vals[g]))
        lo, hi = p[max(i - 1, 0)], p[min(i + 1, len(p) - 1)]
        true_max = refine_max(lambda x: mp_funcs(t, reward, x)[g], lo, hi)
        assert true_max <= br.upper, (g, true_max, br)
        assert true_max >= br.lower * (1 - 1e-12), (g, true_max, br)
        # the witness really attains lower
        assert mp_funcs(t, reward, br.witness)[g] >= br.lower


# ----------------------------------------------------------------------------- tests
def test_api_shapes():
    c = certify(np.log(np.arange(1, 5) / 4), KL)
    assert isinstance(c, Certificate) and isinstance(c.bias, Bracket)
    assert isinstance(c.method, str) and "\n" not in c.method
    assert Bracket(1.0, 2.0, 0.5).rel_gap == 0.5


@pytest.mark.parametrize("K", [4, 16, 64])
def test_kl_plugin_dense(K):
    t = np.log(np.arange(1, K + 1) / K)
    assert_brackets_contain_dense_max(t, KL, certify(t, KL))


@pytest.mark.parametrize("K", [4, 16, 64])
def test_kl_digamma_dense(K):
    t = digamma(np.arange(1, K + 1)) - digamma(K)
    assert_brackets_contain_dense_max(t, KL, certify(t, KL))


def test_alpha_plugin_dense():
    r = parse_reward("alpha:1/2")
    t = r.r(np.arange(1, 9) / 8)
    c = certify(t, r)
    p = dense_grid()
    vals = dense_float(t, r, p)
    for g, br in enumerate((c.bias, c.variance, c.mse)):
        assert np.max(vals[g]) <= br.upper * (1 + 1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_large_entries_near_zero(seed):
    rng = np.random.default_rng(seed)
    K = 12
    t = 1e6 * (-1.0) ** np.arange(K) * rng.uniform(0.3, 1.0, K)
    c = certify(t, KL)
    p = np.geomspace(1e-30, 1e-3, 100_000)
    vals = dense_float(t, KL, p)
    # cross-check the float dense evaluation against mpmath on a subsample
    for i in range(0, len(p), 5000):
        ref = mp_funcs(t, KL, p[i])
        for g in range(3):
            assert abs(vals[g][i] - float(ref[g])) <= 1e-9 * float(ref[g]) + 1e-300
    for g, br in enumerate((c.bias, c.variance, c.mse)):
        assert np.max(vals[g]) <= br.upper, (g, br)
        assert br.rel_gap <= 1e-6
    # and globally
    assert_brackets_contain_dense_max(t, KL, c)


def test_minimax_like_alternating_table():
    # large alternating entries at every p: T(p) is a small difference of huge terms
    K = 24
    t = 1e6 * (-1.0) ** np.arange(K) + np.log(np.arange(1, K + 1) / K)
    c = certify(t, KL)
    p = dense_grid(20_000, 20_000, lo=1e-30)
    vals = dense_float(t, KL, p)
    for g, br in enumerate((c.bias, c.variance, c.mse)):
        assert np.max(vals[g]) <= br.upper * (1 + 1e-9)


@pytest.mark.parametrize("name,K", [("euclidean", 17), ("alpha:3", 3), ("poly:1/4,-3", 9)])
def test_exactly_representable_exact_table_has_zero_bias(name, K):
    r = parse_reward(name)
    exact = u_statistic_table(r.poly_coefficients, K)
    values = [float(x) for x in exact]
    assert [Fraction(v) for v in values] == exact  # dyadic: float64 is exact here
    c = certify(values, r)
    assert c.bias == Bracket(0.0, 0.0, c.bias.witness) and c.bias.upper == 0.0
    assert check_claims({"estimator": "exact", "values": values, "bias_bound": "0", "bias_lower": "0"}, r) == []


def _exact_variance_max(values):
    """max over [0, 1] of p·Var_p(t_c) from the exact rational polynomial."""
    t = [Fraction(v) for v in values]
    T = bernstein_to_monomial(t)
    S = bernstein_to_monomial([x * x for x in t])
    n = len(T)
    T2 = [Fraction(0)] * (2 * n - 1)
    for i, a in enumerate(T):
        for j, b in enumerate(T):
            T2[i + j] += a * b
    var = [(S[i] if i < n else 0) - T2[i] for i in range(len(T2))]
    v = [Fraction(0)] + var  # p·Var
    dv = [k * v[k] for k in range(1, len(v))]
    with mpmath.workdps(60):
        cv = [mpmath.mpf(x.numerator) / x.denominator for x in v]
        cdv = [mpmath.mpf(x.numerator) / x.denominator for x in dv]
        def horner(c, x):
            out = mpmath.mpf(0)
            for a in reversed(c):
                out = out * x + a
            return out

        ev = lambda x: horner(cv, x)  # noqa: E731
        ed = lambda x: horner(cdv, x)  # noqa: E731
        grid = [mpmath.mpf(i) / 4000 for i in range(4001)]
        cands = [mpmath.mpf(0), mpmath.mpf(1)]
        dvals = [ed(x) for x in grid]
        for a, b, da, db in zip(grid, grid[1:], dvals, dvals[1:]):
            if da == 0:
                cands.append(a)
            elif da * db < 0:
                cands.append(mpmath.findroot(ed, (a, b), solver="anderson"))
        return max(ev(x) for x in cands)


@pytest.mark.parametrize("K", [5, 16])
def test_exact_table_variance_against_exact_polynomial(K):
    r = parse_reward("alpha:3")
    values = [float(x) for x in u_statistic_table(r.poly_coefficients, K)]
    c = certify(values, r)
    vmax = _exact_variance_max(values)
    assert c.variance.lower <= vmax <= c.variance.upper
    assert c.variance.rel_gap <= 1e-6
    # the bias is 0 or the tiny sup of the float rounding residual, never more
    assert c.bias.upper <= 1e-15


def test_inexact_float_exact_table_zero_claim_is_caught():
    # alpha:3 at K = 16 has non-dyadic entries: the float64 table is not exactly unbiased
    r = parse_reward("alpha:3")
    values = [float(x) for x in u_statistic_table(r.poly_coefficients, 16)]
    c = certify(values, r)
    assert 0 < c.bias.lower <= c.bias.upper < 1e-15
    fails = check_claims({"estimator": "exact", "values": values, "bias_bound": "0"}, r)
    assert len(fails) == 1 and "bias_bound" in fails[0]


def test_check_claims():
    K = 16
    t = np.log(np.arange(1, K + 1) / K)
    c = certify(t, KL)
    good = {
        "estimator": "plugin",
        "values": list(t),
        "bias_bound": repr(c.bias.upper),
        "bias_lower": repr(c.bias.lower),
        "variance_bound": repr(c.variance.upper),
        "mse_bound": repr(c.mse.upper),
    }
    assert check_claims(good, KL) == []
    small = dict(good, bias_bound=repr(c.bias.lower * 0.5))
    fails = check_claims(small, KL)
    assert len(fails) == 1 and fails[0].startswith("bias_bound")
    loose = dict(good, variance_bound=repr(c.variance.upper * 1.01))
    fails = check_claims(loose, KL)
    assert len(fails) == 1 and fails[0].startswith("variance_bound")
    high_lower = dict(good, bias_lower=repr(c.bias.upper * 2))
    fails = check_claims(high_lower, KL)
    assert len(fails) == 1 and fails[0].startswith("bias_lower")
    both = dict(good, bias_bound="0.001", mse_bound="1e-9")
    assert len(check_claims(both, KL)) == 2


def test_alpha_below_half_has_infinite_mse():
    r = parse_reward("alpha:0.3")
    c = certify(r.r(np.arange(1, 9) / 8), r)
    assert math.isinf(c.mse.upper)
    assert math.isfinite(c.bias.upper) and c.bias.rel_gap <= 1e-6


# ----------------------------------------------------------------------------- issue 13.3
def _local_maxima_mp(t, reward, g, n=20_000, top=8):
    """The largest local maxima of |b| (g = 0) or m (g = 2) on a dense float grid, refined in mpmath."""
    p = dense_grid(n, n, lo=1e-30)
    vals = dense_float(t, reward, p)[g]
    idx = [i for i in range(1, len(p) - 1) if vals[i] >= vals[i - 1] and vals[i] >= vals[i + 1]]
    idx = sorted(idx, key=lambda i: -vals[i])[:top]
    return [refine_max(lambda x: mp_funcs(t, reward, x)[g], p[i - 1], p[i + 1]) for i in idx] + [
        mp_funcs(t, reward, 1.0)[g]]


def test_minimax_K24_bias_bracket_is_tight():
    """kl minimax K=24 (entries up to 1.5e4 alternating, sup|b| ≈ 5.6e-4): the float64 engine's
    error floor left a gap of 3.2e-4; the ball-arithmetic bias bound reaches 1e-6."""
    from coefgen.solvers.minimax import minimax_table

    t, _exact, level = minimax_table("kl", 24)
    c = certify(t, KL)
    assert c.bias.rel_gap <= 1e-6
    assert c.bias.upper >= float(level.lower)  # no table beats the minimax level
    maxima = _local_maxima_mp(t, KL, 0)
    assert max(maxima) <= c.bias.upper
    assert max(maxima) >= c.bias.lower * (1 - 1e-12)
    assert mp_funcs(t, KL, c.bias.witness)[0] >= c.bias.lower


@pytest.mark.parametrize("seed", [0, 1])
def test_ball_bias_on_perturbed_minimax_tables(seed):
    """Huge alternating entries, bias not equioscillating: the ball-arithmetic path (max|t|/sup|b|
    > 1e6) against refined mpmath maxima."""
    from coefgen.certify import _BALL_RATIO, _coarse_estimates
    from coefgen.solvers.minimax import minimax_table

    t0, _exact, _level = minimax_table("kl", 22)
    t = t0 + 3e-4 * np.random.default_rng(seed).normal(size=len(t0))
    assert np.max(np.abs(t)) > _BALL_RATIO * _coarse_estimates(t, KL, None)[0]
    c = certify(t, KL)
    maxima = _local_maxima_mp(t, KL, 0)
    assert max(maxima) <= c.bias.upper
    assert max(maxima) >= c.bias.lower * (1 - 1e-12)
    assert c.bias.rel_gap <= 1e-6


@pytest.mark.parametrize("t1", [-6.0, 1.5, 2.0, 2.5])
def test_alpha_half_sup_mse_is_the_limit_at_zero(t1):
    """alpha:1/2: m(p) = 4 + 4(t_1 − 2)√p + O(p) as p → 0, so sup m ≥ 4 for every table and = 4
    when m stays ≤ 4 (t_1 < 2 and a moderate table). The bracket used to stop at [3.75, 4.28]."""
    r = parse_reward("alpha:1/2")
    K = 15
    t = r.r(np.arange(1, K + 1) / K)
    t[0] = t1
    c = certify(t, r)
    assert c.mse.rel_gap <= 1e-6
    maxima = _local_maxima_mp(t, r, 2)
    with mpmath.workdps(40):  # the limit, approached at p = 1e-30
        near0 = mp_funcs(t, r, mpmath.mpf(10) ** -30)[2]
    assert abs(near0 - 4) < 1e-12
    true_sup = max(maxima + [mpmath.mpf(4)])
    assert true_sup <= c.mse.upper
    assert true_sup >= c.mse.lower
    if t1 > 2:
        assert c.mse.lower > 4.0  # m rises above its limit near 0
    elif t1 < 2:
        assert c.mse.upper == 4.0  # the sup is exactly the limit


def test_alpha_half_plugin_mse_bound_is_4():
    r = parse_reward("alpha:0.5")
    for K in (15, 64):
        c = certify(r.r(np.arange(1, K + 1) / K), r)
        assert c.mse.upper == 4.0 and 4.0 * (1 - 1e-8) <= c.mse.lower < 4.0


def test_basis_is_the_plain_formula_bit_for_bit():
    """_basis (in place, exp skipped where it underflows) returns exactly the numbers of the plain
    formula B = exp(log C + j log p + (n−j) log1p(−p)), ρ = 8u(|log C| + j|log p| + (n−j)|log1p(−p)| + 1),
    and B agrees with scipy's binomial pmf to rounding."""
    from coefgen.certify import U, _basis, log_binomial_coefficients

    rng = np.random.default_rng(7)
    for n in (0, 1, 7, 255, 2046):
        logc = log_binomial_coefficients(n)
        p = np.concatenate([[0.0, 1.0, 1e-300, 5e-324, 1 - 2**-53], rng.uniform(0, 1, 40), 10 ** rng.uniform(-12, 0, 20)])
        j = np.arange(n + 1, dtype=float)
        with np.errstate(divide="ignore"):
            lp = np.where(p > 0, np.log(p), 0.0)[:, None]
            lq = np.where(p < 1, np.log1p(-p), 0.0)[:, None]
        e = logc[None, :] + j[None, :] * lp + (n - j)[None, :] * lq
        e[p == 0, 1:] = -np.inf
        e[p == 1, :n] = -np.inf
        B_plain = np.exp(e)
        rho_plain = 8 * U * (np.abs(logc)[None, :] + j[None, :] * np.abs(lp) + (n - j)[None, :] * np.abs(lq) + 1.0)
        B, rho = _basis(n, logc, p)
        assert np.array_equal(B, B_plain) and np.array_equal(rho, rho_plain)
        ref = binom.pmf(np.arange(n + 1)[None, :], n, p[:, None])
        assert np.all(np.abs(B - ref) <= 1e-9 * ref + 1e-300)


def test_chernoff_window_bounds_every_left_out_column():
    """Every column j outside chernoff_window(n, lo, hi) has log B_j^n(p) ≤ −300 at every p of
    [lo, hi] (scipy's binomial log-pmf on a dense grid), and the window is tight: its first and
    last columns are within a few units of −300 at lo and hi."""
    from coefgen.certify import _WINDOW_LOG, chernoff_window

    rng = np.random.default_rng(11)
    cases = [(1, 0.5, 0.5), (50, 1e-8, 1e-6), (2046, 0.5, 0.5), (2046, 1e-7, 2e-7), (4093, 0.999, 1.0),
             (511, 0.0, 0.3), (4093, 0.2, 0.2001)]
    for _ in range(12):
        n = int(rng.integers(2, 4094))
        lo = float(10 ** rng.uniform(-9, 0))
        cases.append((n, lo, min(1.0, lo * float(1 + rng.uniform(0, 0.05)))))
    partial = 0
    for n, lo, hi in cases:
        j0, j1 = chernoff_window(n, lo, hi)
        assert 0 <= j0 <= j1 <= n
        p = np.unique(np.concatenate([np.linspace(lo, hi, 201), [lo, hi]]))
        j = np.arange(n + 1)
        out = (j < j0) | (j > j1)
        if out.any():
            partial += 1
            logb = binom.logpmf(j[out][None, :], n, p[:, None])
            assert logb.max() <= -_WINDOW_LOG + 1e-9, (n, lo, hi)
        # tight: the kept edge columns are not far below the threshold at the chunk's ends
        slack = 3 * math.log(n + 1) + 3
        if j0 > 0:
            assert binom.logpmf(j0, n, lo) >= -_WINDOW_LOG - slack
        if j1 < n:
            assert binom.logpmf(j1, n, hi) >= -_WINDOW_LOG - slack
    assert partial >= 10  # the cases exercise left-out columns


def test_windowed_basis_is_a_column_slice_bit_for_bit():
    from coefgen.certify import _basis, log_binomial_coefficients

    n = 300
    logc = log_binomial_coefficients(n)
    p = np.array([0.0, 1e-9, 0.01, 0.4, 0.99, 1.0])
    B, rho = _basis(n, logc, p)
    for j0, j1 in ((0, 0), (0, 17), (5, 200), (299, 300), (300, 300), (0, 300)):
        Bw, rw = _basis(n, logc, p, j0, j1)
        assert np.array_equal(Bw, B[:, j0 : j1 + 1]) and np.array_equal(rw, rho[:, j0 : j1 + 1])


@pytest.mark.parametrize("K", [300, 700])
def test_windowed_certificate_agrees_with_all_columns(monkeypatch, K):
    """The column windows (left-out columns bounded by e^-300) change a certificate by rounding
    only: the same brackets as with every column kept, to 1e-12."""
    import coefgen.certify as C
    from coefgen.solvers.baselines import solve_plugin

    rw = parse_reward("kl")
    t = np.asarray(solve_plugin(rw, K).values, float)
    t = t + 1e-3 * np.sin(np.arange(K))  # not a table any solver returns: bumps everywhere
    windowed = C._certify_uncached(t, rw, 1e-6)
    monkeypatch.setattr(C, "chernoff_window", lambda n, lo, hi, L=0.0: (0, n))
    full = C._certify_uncached(t, rw, 1e-6)
    for g in ("bias", "variance", "mse"):
        a, b = getattr(windowed, g), getattr(full, g)
        assert a.upper == pytest.approx(b.upper, rel=1e-12) and a.lower == pytest.approx(b.lower, rel=1e-12)
        assert a.lower <= a.upper
