"""The alignment game (coefgen.game): mean field, stochastic runs, gradients, targets."""

import itertools
import json
import math
import statistics
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from coefgen.bernstein import bernstein_to_monomial
from coefgen.compiler import compile_table
from coefgen.errors import InputError
from coefgen.game import (
    _advantages,
    bregman_divergence,
    effective_mean,
    expected_gradient,
    expected_reward,
    gradient_bias_variance,
    kl_divergence,
    loo_equivalent_table,
    make_targets,
    mean_field_equilibrium,
    stochastic_run,
    table_mean_derivatives,
    validate_targets,
)


def table(divergence, K, estimator, **params):
    return np.array(compile_table(divergence, K, estimator, params)["values"])


def plugin_kl(K):
    return np.log(np.arange(1, K + 1) / K)


# ---------------------------------------------------------------------------- T(p)


def test_expected_reward_and_derivatives_match_exact_rationals():
    rng = np.random.default_rng(5)
    K = 9
    t = [Fraction(int(x), 7) for x in rng.integers(-40, 40, K)]
    a = bernstein_to_monomial(t)  # exact monomial coefficients of T
    da = [j * a[j] for j in range(1, len(a))]
    d2a = [j * da[j] for j in range(1, len(da))]
    ev = lambda c, x: sum(cj * x**j for j, cj in enumerate(c))  # noqa: E731
    ps = [Fraction(0), Fraction(1, 1000), Fraction(1, 3), Fraction(7, 8), Fraction(1)]
    T, T1, T2 = table_mean_derivatives(np.array([float(x) for x in t]), np.array([float(x) for x in ps]), 2)
    for i, x in enumerate(ps):
        assert T[i] == pytest.approx(float(ev(a, x)), abs=1e-12)
        assert T1[i] == pytest.approx(float(ev(da, x)), abs=1e-10)
        assert T2[i] == pytest.approx(float(ev(d2a, x)), abs=1e-8)


def test_expected_reward_is_stable_at_K_1024():
    K = 1024
    t = plugin_kl(K)
    ps = [1e-4, 0.03, 0.5, 0.999]
    got = expected_reward(t, np.array(ps))
    with mpmath.workdps(40):
        for x, g in zip(ps, got):
            x = mpmath.mpf(x)
            ref = mpmath.fsum(mpmath.log(mpmath.mpf(c) / K) * mpmath.binomial(K - 1, c - 1) * x ** (c - 1)
                              * (1 - x) ** (K - c) for c in range(1, K + 1))
            assert abs(g - float(ref)) < 1e-12
    assert expected_reward(t, np.zeros((2, 3))).shape == (2, 3)


# ---------------------------------------------------------------------------- targets


def test_zipf_and_dirichlet_targets():
    q = make_targets("zipf:1.5:10", 3)
    w = np.arange(1, 11) ** -1.5
    np.testing.assert_allclose(q, np.tile(w / w.sum(), (3, 1)), rtol=1e-15)
    d = make_targets("dirichlet:0.1:50", 20, seed=3)
    assert d.shape == (20, 50) and np.all(d > 0)
    np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-12)
    assert len({tuple(r) for r in d}) == 20                       # one draw per prompt
    assert np.array_equal(d, make_targets("dirichlet:0.1:50", 20, seed=3))
    assert not np.array_equal(d, make_targets("dirichlet:0.1:50", 20, seed=4))
    # Dirichlet(1) on M = 2: the first coordinate is uniform on [0, 1]
    u = make_targets("dirichlet:1:2", 4000, seed=1)[:, 0]
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 4000)
    # alpha < 1 (log-space draws): q_1 has mean 1/M and variance (1/M)(1 − 1/M)/(M alpha + 1)
    x = make_targets("dirichlet:0.1:4", 20000, seed=2)[:, 0]
    var = 0.25 * 0.75 / 1.4
    assert abs(x.mean() - 0.25) < 4 * math.sqrt(var / 20000)
    assert abs(x.var() - var) < 0.1 * var


def test_target_files(tmp_path):
    f = tmp_path / "q.json"
    f.write_text(json.dumps([[0.5, 0.5], [0.25, 0.75]]))
    assert make_targets(str(f), 2).shape == (2, 2)
    g = tmp_path / "q.npy"
    np.save(g, np.array([[0.1, 0.9]]))
    assert make_targets(str(g), 3).shape == (3, 2)   # one row repeated for every prompt


@pytest.mark.parametrize("content,msg", [
    ([[0.5, 0.6]], "sums to"), ([[1.5, -0.5]], "negative"), ([[1.0]], "M = 1"),
    ([[0.5, "x"]], "numbers"), ({"a": 1}, "list of lists"), ([[0.5, 0.5], [1.0]], "rectangular"),
])
def test_bad_target_files(tmp_path, content, msg):
    f = tmp_path / "q.json"
    f.write_text(json.dumps(content))
    with pytest.raises(InputError, match=msg):
        make_targets(str(f), 1)


@pytest.mark.parametrize("spec,msg", [
    ("zipf:1.5:1", "M >= 2"), ("zipf:x:3", "not an exact decimal"), ("dirichlet:-1:4", "alpha"), ("zipf:1:3:4", "expected"),
    ("zipf:1:100000000", "cap"), ("nonexistent.json", "nor an existing file"), ("zipf:nan:3", "not an exact decimal"), ("zipf:1.5:١٠", "ASCII digits"),
])
def test_bad_target_specs(spec, msg):
    with pytest.raises(InputError, match=msg):
        make_targets(spec, 2)


def test_validate_targets_rejects_nonfinite_and_caps():
    with pytest.raises(InputError, match="finite"):
        validate_targets([[np.nan, 1.0]])
    with pytest.raises(InputError, match="cap"):
        make_targets("zipf:1:1000", 10_000)


# ---------------------------------------------------------------------------- divergences


def test_bregman_divergence_is_kl_and_alpha():
    p = np.array([0.2, 0.3, 0.5])
    q = np.array([0.4, 0.4, 0.2])
    kl = float(np.sum(p * np.log(p / q)))
    assert bregman_divergence("kl", p, q) == pytest.approx(kl, rel=1e-14)
    assert kl_divergence(p, q) == pytest.approx(kl, rel=1e-14)
    # euclidean: φ = (p² − 2p)/2 ⇒ D = ‖p − q‖²/2
    assert bregman_divergence("euclidean", p, q) == pytest.approx(0.5 * np.sum((p - q) ** 2), rel=1e-12)
    assert kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf


# ---------------------------------------------------------------------------- mean field


@pytest.mark.parametrize("divergence,K", [("euclidean", 8), ("alpha:3", 6), ("euclidean", 64)])
def test_exact_tables_reach_the_target(divergence, K):
    t = table(divergence, K, "exact")
    q = make_targets("dirichlet:1:6", 4, seed=2)
    mf = mean_field_equilibrium(t, q, divergence)
    assert mf.converged
    assert np.max(np.abs(mf.p - q)) < 1e-9
    assert np.all(mf.dead_mass == 0) and np.all(mf.kl < 1e-15)


def _independent_T(t, x):
    K = len(t)
    return sum(t[c - 1] * math.comb(K - 1, c - 1) * x ** (c - 1) * (1 - x) ** (K - c) for c in range(1, K + 1))


def _kkt_by_bisection(t, q):
    """Independent solution for an increasing T: p_z = T⁻¹(λ + log q_z) (0 below T(0)), Σ p = 1, by nested bisection."""
    def p_of(y):
        if y <= t[0]:
            return 0.0
        lo, hi = 0.0, 1.0
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _independent_T(t, mid) < y else (lo, mid)
        return (lo + hi) / 2
    lo, hi = -20.0, 20.0
    for _ in range(100):
        lam = (lo + hi) / 2
        s = sum(p_of(lam + math.log(z)) for z in q)
        lo, hi = (lam, hi) if s < 1 else (lo, lam)
    return np.array([p_of(lam + math.log(z)) for z in q]), lam


@pytest.mark.parametrize("K,issue_kl", [(8, 0.307), (16, 0.200)])
def test_plugin_equilibrium_satisfies_the_stationarity_conditions(K, issue_kl):
    t = plugin_kl(K)
    q = make_targets("zipf:1.5:10", 1)[0]
    mf = mean_field_equilibrium(t, q[None, :], "kl")
    p, lam = mf.p[0], mf.lam[0]
    surv = p > 0
    assert 0 < surv.sum() < 10 and mf.converged
    g = np.array([_independent_T(t, x) for x in p]) - np.log(q)
    assert np.max(np.abs(g[surv] - lam)) < 1e-12          # T(p_z) − log q_z = λ on survivors
    assert np.all(t[0] - np.log(q[~surv]) >= lam)           # dead answers: cost at p = 0 above λ
    assert abs(p.sum() - 1) < 1e-15
    ref, ref_lam = _kkt_by_bisection(list(t), list(q))
    np.testing.assert_allclose(p, ref, atol=1e-9)
    assert mf.dead_mass[0] == pytest.approx(q[~surv].sum(), rel=1e-15)
    assert mf.min_surviving_q[0] == q[surv].min()
    assert round(mf.kl[0], 3) == issue_kl                    # the issue's independent figure


def test_issue_figures_for_non_monotone_tables():
    """The issue's independent game (zipf:1.5:10): digamma, aqp tau = 3 and minimax, K = 8 and 16."""
    q = make_targets("zipf:1.5:10", 1)
    cases = [(8, "digamma", {}, 0.218), (16, "digamma", {}, 0.114), (8, "aqp", {"tau": 3}, 0.104),
             (16, "aqp", {"tau": 3}, 5.0e-4), (8, "minimax", {}, 0.0023), (16, "minimax", {}, 1.1e-4)]
    for K, est, params, ref in cases:
        mf = mean_field_equilibrium(table("kl", K, est, **params), q, "kl")
        assert mf.converged
        assert float(f"{mf.kl[0]:.2g}") == pytest.approx(float(f"{ref:.2g}")), (K, est, mf.kl[0])


def test_mean_field_at_K_1024_is_converged():
    t = plugin_kl(1024)
    q = make_targets("dirichlet:0.3:20", 3, seed=1)
    mf = mean_field_equilibrium(t, q, "kl")
    assert mf.converged and np.all(mf.residual < 1e-9)
    assert np.all(mf.kl < 0.05)


# ---------------------------------------------------------------------------- gradients


def _enumerated_gradient(t, p, rq, baseline):
    """E[ĝ] by enumerating every group of K answers, the estimator written per sample."""
    K, M = len(t), len(p)
    out = np.zeros(M)
    for zs in itertools.product(range(M), repeat=K):
        prob = np.prod(p[list(zs)])
        counts = [zs.count(z) for z in zs]
        a = [t[c - 1] - rq[z] for z, c in zip(zs, counts)]
        if baseline == "none":
            adv = a
        elif baseline == "loo":
            adv = [a[i] - (sum(a) - a[i]) / (K - 1) for i in range(K)]
        elif baseline == "mean":
            adv = [a[i] - sum(a) / K for i in range(K)]
        else:
            sd = statistics.stdev(a)                           # sample std, as torch.std / TRL
            adv = [(a[i] - sum(a) / K) / (sd + 1e-4) for i in range(K)]
        for i, z in enumerate(zs):
            out += prob * adv[i] * (np.eye(M)[z] - p) / K
    return out


def test_expected_gradient_by_exact_enumeration():
    t = np.array([-2.0, -0.7, -0.9, 0.1])   # K = 4, not monotone
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.6, 0.3, 0.1])
    rq = np.log(q)
    for b in ("none", "loo", "mean"):
        np.testing.assert_allclose(expected_gradient(t, "kl", p[None], q[None], b)[0],
                                   _enumerated_gradient(t, p, rq, b), atol=1e-13)
    # the LOO baseline changes the expected gradient (count-based rewards): T − p T'/(K − 1)
    none, loo = (_enumerated_gradient(t, p, rq, b) for b in ("none", "loo"))
    assert np.max(np.abs(loo - none)) > 1e-2
    grpo = _enumerated_gradient(t, p, rq, "grpo")
    assert np.max(np.abs(grpo - none)) > 1e-2 and np.max(np.abs(grpo - loo)) > 1e-2


def test_grpo_advantage_formula():
    t = np.array([-3.0, -1.0, -0.5, 0.0, 0.2])
    n = np.array([[2, 0, 3], [5, 0, 0], [1, 1, 3]])
    rq = np.array([[-0.1, -2.0, -1.0]] * 3)
    adv = _advantages(t, n, rq, "grpo")
    for i in range(3):
        costs = [t[n[i, z] - 1] - rq[i, z] for z in range(3) for _ in range(n[i, z])]
        mu, sd = sum(costs) / 5, statistics.stdev(costs)
        for z in range(3):
            if n[i, z]:
                assert adv[i, z] == pytest.approx((t[n[i, z] - 1] - rq[i, z] - mu) / (sd + 1e-4), abs=1e-12)


@pytest.mark.parametrize("baseline", ["none", "loo", "mean"])
def test_measured_gradient_matches_its_expectation(baseline):
    t = plugin_kl(8)
    q = make_targets("dirichlet:1:5", 2, seed=7)
    theta = np.random.default_rng(1).normal(size=q.shape)
    gs = gradient_bias_variance(t, q, theta, 8, "kl", baseline, n_draws=20000, seed=3)
    z = np.abs(gs.mean - gs.expected) / gs.stderr
    assert np.max(z) < 5
    assert gs.relative_bias > 0.05 and gs.relative_variance > 0   # the plug-in is biased


def test_exact_table_without_baseline_is_unbiased():
    t = table("euclidean", 8, "exact")
    q = make_targets("dirichlet:1:5", 2, seed=7)
    theta = np.random.default_rng(1).normal(size=q.shape)
    gs = gradient_bias_variance(t, q, theta, 8, "euclidean", "none", n_draws=20000, seed=4)
    np.testing.assert_allclose(gs.expected, gs.exact, atol=1e-15)
    assert np.max(np.abs(gs.mean - gs.exact) / gs.stderr) < 5
    noise = math.sqrt(np.sum(gs.stderr**2)) / np.linalg.norm(gs.exact)   # ‖pure MC error‖ ≈ this
    assert gs.relative_bias < 3 * noise
    assert gs.cosine > 0.99


# ---------------------------------------------------------------------------- stochastic runs


def _richardson_average(t, q, baseline, seed):
    """Time-average of p over the second half at lr and lr/2, extrapolated to lr → 0 (the O(lr) step bias),
    with its standard error from the independent prompts (each prompt is an independent replica)."""
    avgs = []
    for lr, steps in ((0.1, 4000), (0.05, 8000)):
        run = stochastic_run(t, q, steps=steps, lr=lr, baseline=baseline, seed=seed, average_from=steps // 2)
        avgs.append(run.p_average)
    a, c = avgs
    est = 2 * c.mean(axis=0) - a.mean(axis=0)
    se = np.sqrt(4 * c.var(axis=0, ddof=1) + a.var(axis=0, ddof=1)) / math.sqrt(q.shape[0])
    return est, se


@pytest.mark.parametrize("baseline", ["loo", "none"])
def test_long_run_average_matches_the_mean_field(baseline):
    t = plugin_kl(8)
    q = make_targets("zipf:1:3", 256)
    mf = mean_field_equilibrium(t, q[:1], "kl", baseline=baseline)
    est, se = _richardson_average(t, q, baseline, seed=3)
    assert np.max(np.abs(est - mf.p[0]) / se) < 4.5
    if baseline == "loo":   # and it is not the no-baseline equilibrium: the LOO bias is real
        other = mean_field_equilibrium(t, q[:1], "kl", baseline="none")
        assert np.max(np.abs(est - other.p[0]) / se) > 10


def test_runs_are_reproducible_and_record_what_they_say():
    t = plugin_kl(8)
    q = make_targets("dirichlet:0.5:6", 16, seed=1)
    kw = dict(steps=300, lr=0.5, baseline="grpo", optimizer="adam", reward="kl")
    a = stochastic_run(t, q, seed=11, **kw)
    b = stochastic_run(t, q, seed=11, **kw)
    c = stochastic_run(t, q, seed=12, **kw)
    assert a.kl_mean.tobytes() == b.kl_mean.tobytes() and a.p_final.tobytes() == b.p_final.tobytes()
    assert a.p_final.tobytes() != c.p_final.tobytes()
    assert a.steps[0] == 0 and a.steps[-1] == 300
    np.testing.assert_allclose(a.final_kl, kl_divergence(a.p_final, q))
    assert a.kl_mean[-1] == pytest.approx(a.final_kl.mean())
    assert np.all(a.kl_q05 <= a.kl_q95)
    assert a.kl_mean[-1] < a.kl_mean[0]                       # it learns
    eps = a.kl_mean[-1] * 1.5
    s = a.steps_to(eps)
    assert s is not None and a.kl_mean[list(a.steps).index(s)] <= eps
    assert a.steps_to(-1.0) is None


def test_gradient_checkpoints_in_a_run():
    t = plugin_kl(8)
    q = make_targets("zipf:1:4", 8)
    run = stochastic_run(t, q, steps=50, lr=0.3, seed=1, gradient_checkpoints=(0, 50), gradient_draws=200)
    assert [s for s, _ in run.gradient] == [0, 50]
    assert all(g.relative_variance > 0 for _, g in run.gradient)


@pytest.mark.parametrize("kw,msg", [
    (dict(lr=0.0), "learning rate"), (dict(lr=float("nan")), "learning rate"), (dict(baseline="x"), "baseline"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(steps=-1), "steps"),
])
def test_bad_run_arguments(kw, msg):
    args = dict(steps=10, lr=0.1)
    args.update(kw)
    with pytest.raises(InputError, match=msg):
        stochastic_run(plugin_kl(4), make_targets("zipf:1:3", 2), **args)


def test_effective_mean_of_loo_for_an_exact_table():
    # euclidean exact: T(p) = p − 1, so T_loo(p) = p (K − 2)/(K − 1) − 1
    t = table("euclidean", 8, "exact")
    p = np.linspace(0, 1, 7)
    np.testing.assert_allclose(effective_mean(t, p, "loo")[0], p * 6 / 7 - 1, atol=1e-14)


def test_chebyshev_evaluation_agrees_with_the_pmf_matrix():
    from coefgen.game import MeanEvaluator

    rng = np.random.default_rng(2)
    for vals in (plugin_kl(1024), np.cumsum(rng.normal(size=300)) / 10):
        ev = MeanEvaluator(vals)
        assert ev.cheb
        p = np.concatenate([[0.0, 1.0, 1e-7], rng.random(400) ** 4])
        T, dT = ev(p)
        T0, dT0 = table_mean_derivatives(vals, p, 1)
        scale = np.max(np.abs(vals))
        assert np.max(np.abs(T - T0)) < 1e-11 * scale
        assert np.max(np.abs(dT - dT0) / (1 + np.abs(dT0))) < 1e-9 * scale


def test_under_loo_a_K_table_acts_as_its_first_K_minus_1_entries():
    rng = np.random.default_rng(4)
    t = rng.normal(size=9)
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(effective_mean(t, p, "loo")[0], expected_reward(loo_equivalent_table(t), p), atol=1e-13)
    # so the exact euclidean table for K - 1 = 7 samples, padded with any t_8, is LOO-unbiased at K = 8
    u = table("euclidean", 7, "exact")
    q = make_targets("dirichlet:1:5", 3, seed=5)
    for pad in (-5.0, 0.0, 7.0):
        mf = mean_field_equilibrium(np.append(u, pad), q, "euclidean", baseline="loo")
        assert np.max(np.abs(mf.p - q)) < 1e-9
    # while the K = 8 exact table is not
    mf8 = mean_field_equilibrium(table("euclidean", 8, "exact"), q, "euclidean", baseline="loo")
    assert np.max(np.abs(mf8.p - q)) > 1e-3


def test_mean_field_agrees_with_an_independent_stiff_integrator():
    """scipy's Radau on θ̇ = −p (g − Σ p g) in log-time to t = 1e7, for a non-monotone table (minimax, K = 8):
    same survivors, same limit (dying answers are still ~1/(gap·t) there)."""
    from scipy.integrate import solve_ivp

    t = table("kl", 8, "minimax")
    q = make_targets("dirichlet:0.3:6", 3, seed=2)
    mf = mean_field_equilibrium(t, q, "kl")
    assert not mf.table_monotone and mf.converged and np.any(mf.dead)
    for i in (0, 2):
        def rhs(s, th, qi=q[i]):
            p = np.exp(th - th.max())
            p /= p.sum()
            g = expected_reward(t, p) - np.log(qi)
            return -np.exp(s) * p * (g - p @ g)   # dθ/ds with t = e^s − 1, ×(1 + t)
        sol = solve_ivp(rhs, (0, np.log1p(1e7)), np.zeros(6), method="Radau", rtol=1e-9, atol=1e-11)
        th = sol.y[:, -1]
        p = np.exp(th - th.max())
        p /= p.sum()
        dead = mf.dead[i]
        assert np.all(p[dead] < 2e-5) and np.all(mf.p[i][~dead] > 1e-3)        # the same survivors
        np.testing.assert_allclose(p[~dead], mf.p[i][~dead], atol=2e-5)          # up to the dying mass left
    # and it does not depend on the step limit
    fine = mean_field_equilibrium(t, q, "kl", max_step=0.01)
    np.testing.assert_allclose(fine.p, mf.p, atol=1e-10)


def test_increasing_table_equilibrium_is_the_kkt_point_even_with_many_rare_answers():
    """zipf:1.5:100 at K = 8 (the exact flow starves rare survivors there, see kkt_equilibrium): the
    reported p* satisfies the KKT conditions, checked with scipy's binomial pmf (independent of the
    engine's evaluator): T(p_z) − log q_z = λ on survivors, t_1 − log q_z ≥ λ on dead answers."""
    from scipy.stats import binom

    from coefgen import game

    K = 8
    t = np.log(np.arange(1, K + 1) / K)
    q = game.make_targets("zipf:1.5:100", 1, 0)
    r = game.mean_field_equilibrium(t, q)
    assert r.converged
    p = r.p[0]
    T = np.array([np.dot(t, binom.pmf(np.arange(K), K - 1, pz)) for pz in p])
    g = T - np.log(q[0])
    surv = p > 0
    lam = g[surv].mean()
    assert 1 < surv.sum() < 100
    assert np.max(np.abs(g[surv] - lam)) < 1e-9
    assert np.all(t[0] - np.log(q[0][~surv]) >= lam - 1e-12)
    assert abs(p.sum() - 1) < 1e-12


# ---------------------------------------------------------------------------- heavy tails (issue 16.5)


def _binom_mean(t, p):
    """T(p) of a table t with scipy's binomial pmf (independent of the engine's evaluators)."""
    from scipy.stats import binom

    n = len(t) - 1
    return np.array([np.dot(t, binom.pmf(np.arange(n + 1), n, x)) for x in np.atleast_1d(p)])


@pytest.mark.parametrize("K", [4, 8, 16])
def test_heavy_tailed_target_under_loo_converges_to_a_stable_stationary_point(K):
    """zipf:1.0:1000 with the no-baseline default table (non-monotone entries) under LOO: the effective
    mean T_loo = the mean of t_1..t_{K-1} as a (K-1)-table decreases near p = 1. The flow from uniform
    first puts almost all mass on one answer (on the decreasing branch) and leaves answers that must
    revive at p ~ 1e-18 (they need θ-time ~1/p), which was reported as 'KL 2.01, residual 2-4'. Now
    the result is a verified stationary point: T_{K-1}(p_z) − log q_z = λ on survivors, survivors on
    the increasing branch (T′ > 0: Φ locally strictly convex, a stable equilibrium), dead answers'
    cost at p = 0 ≥ λ — checked with scipy's binomial pmf on the (K-1)-table (the LOO identity)."""
    t = table("kl", K, "aqp", max_mse="4plugin", gamma=0.75)
    q = make_targets("zipf:1.0:1000", 1)
    mf = mean_field_equilibrium(t, q, "kl", baseline="loo")
    assert mf.converged and mf.residual[0] < 1e-9
    p, lq = mf.p[0], np.log(q[0])
    surv = p > 0
    s = t[:-1]                                    # under LOO the K-table acts as this (K-1)-table
    g = _binom_mean(s, p[surv]) - lq[surv]
    lam = g.mean()
    assert np.max(np.abs(g - lam)) < 1e-9
    assert np.all(s[0] - lq[~surv] >= lam - 1e-12)
    h = 1e-7
    slope = (_binom_mean(s, p[surv] + h) - _binom_mean(s, p[surv] - h)) / (2 * h)
    assert np.all(slope > 0)
    assert abs(p.sum() - 1) < 1e-12
    assert 0.3 < mf.kl[0] < 1.5 and mf.kl[0] < 2.0                 # not the collapsed state (KL = −log q_1 = 2.013)


def test_mean_field_reports_non_convergence():
    """A decreasing table (rich get richer) with a tiny step budget: the flow cannot settle and no
    increasing branch exists; the result says so (converged False, per-row flags, a large residual)."""
    t = -np.arange(6, dtype=float)
    q = make_targets("dirichlet:1:8", 3, seed=0)
    mf = mean_field_equilibrium(t, q, "kl", max_steps=2)
    assert not mf.converged and not np.any(mf.converged_rows)
    assert np.all(mf.residual > 1e-6)
    full = mean_field_equilibrium(t, q, "kl")                       # with its budget it settles at a vertex
    assert full.converged and np.all(full.p.max(axis=1) == pytest.approx(1.0))


def test_tail_kl_is_the_mean_of_the_recorded_kl_over_the_tail():
    """tail_kl (per prompt, averaged over steps >= tail_from) against the run's own record at every step."""
    t = plugin_kl(6)
    q = make_targets("dirichlet:1:5", 4, seed=3)
    run = stochastic_run(t, q, steps=150, lr=0.5, baseline="grpo", seed=2, record=list(range(50, 151)), tail_from=50)
    assert run.tail_kl.shape == (4,)
    assert float(np.mean(run.tail_kl)) == pytest.approx(float(np.mean(run.kl_mean)), rel=1e-12)
    late = run.kl_mean[run.steps >= 100]
    assert float(np.mean(run.tail_kl_late)) == pytest.approx(float(np.mean(late)), rel=1e-12)
    # the tail is free: the trajectory does not depend on whether it is measured
    plain = stochastic_run(t, q, steps=150, lr=0.5, baseline="grpo", seed=2, record=[150])
    np.testing.assert_array_equal(plain.p_final, run.p_final)


def test_unique_rows_groups_identical_rows():
    from coefgen.game import unique_rows

    q = make_targets("dirichlet:1:4", 5, seed=0)
    q = q[[0, 1, 0, 2, 1, 3, 4, 4]]
    uq, inv = unique_rows(q)
    np.testing.assert_array_equal(uq[inv], q)
    assert uq.shape[0] == len({r.tobytes() for r in q}) == 5
