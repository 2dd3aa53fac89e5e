"""AQP tables (issue 5): budget met, optimality against other tables, frontier, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coefgen.certify import certify
from coefgen.errors import CheckError, InputError
from coefgen.rewards import parse_reward
from coefgen.solvers.aqp import mean_mse, mean_weights, normalize_aqp_params, profile, solve_aqp
from coefgen.solvers.baselines import solve_plugin

KL = parse_reward("kl")
# public checkpoint (DESIGN §5), so these tests do not depend on the minimax solver
E8 = 0.0050605659819431720875
K = 8


@pytest.fixture(scope="module")
def tables():
    """AQP kl K=8 tables for a few τ, with their certificates."""
    out = {}
    for tau in (1.5, 3, 10, 30, 100):
        sol = solve_aqp(KL, K, tau=tau, level=E8)
        out[tau] = (sol, certify(sol.values, KL))
    return out


# --------------------------------------------------------------------------- parameters
def test_normalize_defaults_and_canonical_values():
    game = {"gamma": 1, "monotone": False}
    assert normalize_aqp_params({}) == {"tau": 10, "objective": "worst", "max_mse": None, **game}
    p = normalize_aqp_params({"tau": 10.0, "objective": "mean", "max_mse": None})
    assert p == {"tau": 10, "objective": "mean", "max_mse": None, **game} and isinstance(p["tau"], int)
    assert normalize_aqp_params({"tau": "2.5"})["tau"] == 2.5
    assert normalize_aqp_params({"tau": 10, "max_mse": "plugin"}) == {"tau": None, "objective": "worst",
                                                                     "max_mse": "plugin", **game}
    assert normalize_aqp_params({"max_mse": "10*plugin"})["max_mse"] == "10plugin"
    assert normalize_aqp_params({"max_mse": "2.5 x Plugin"})["max_mse"] == "2.5plugin"
    assert normalize_aqp_params({"max_mse": "1plugin"})["max_mse"] == "plugin"
    p = normalize_aqp_params({"max_mse": "plugin", "gamma": "0.50", "monotone": "true"})
    assert p["gamma"] == 0.5 and p["monotone"] is True
    assert normalize_aqp_params({"max_mse": 0.25})["max_mse"] == 0.25
    assert normalize_aqp_params({"max_mse": 1.0})["max_mse"] == 1


@pytest.mark.parametrize(
    "params, message",
    [
        ({"tau": 0.5}, "tau must be a number >= 1"),
        ({"tau": "abc"}, "tau must be a number >= 1"),
        ({"tau": float("nan")}, "tau must be a number >= 1"),
        ({"tau": True}, "tau must be a number >= 1"),
        ({"objective": "median"}, "objective must be worst or mean"),
        ({"max_mse": -1}, "max_mse must be positive or 'plugin'"),
        ({"max_mse": 0}, "max_mse must be positive or 'plugin'"),
        ({"max_mse": "lots"}, "max_mse must be positive or 'plugin'"),
        ({"max_mse": 1, "objective": "mean"}, "cannot be combined"),
        ({"max_mse": "0.5plugin"}, "needs k >= 1"),
        ({"max_mse": "xyplugin"}, "max_mse must be positive"),
        ({"gamma": 0.5}, "gamma .* needs max_mse"),
        ({"max_mse": "plugin", "gamma": 0}, r"gamma must be a number in \(0, 1\]"),
        ({"max_mse": "plugin", "gamma": 1.5}, r"gamma must be a number in \(0, 1\]"),
        ({"max_mse": "plugin", "monotone": "yes"}, "monotone must be true or false"),
        ({"max_mse": "plugin", "monotone": 1}, "monotone must be true or false"),
        ({"kappa": 1}, "has no parameter 'kappa'"),
    ],
)
def test_normalize_rejects(params, message):
    with pytest.raises(InputError, match=message):
        normalize_aqp_params(params)


# --------------------------------------------------------------------------- worst objective
def test_certified_bias_within_budget(tables):
    for tau, (sol, cert) in tables.items():
        assert sol.bias_target == pytest.approx(tau * E8, rel=1e-15)
        assert cert.bias.upper <= tau * E8, tau
        assert np.all(np.isfinite(sol.values)) and sol.values.dtype == np.float64
        # the exact strings are the float64 values themselves
        assert [float(s) for s in sol.values_exact] == list(sol.values)
        d = sol.params
        assert d["objective_lower"] <= d["objective_upper"]
        assert d["objective_upper"] == pytest.approx(float(cert.mse.upper), rel=1e-8)
        assert 0 <= d["gap"] < 1e-3


def test_frontier_monotone(tables):
    """Optimal sup m is non-increasing in τ (a larger budget admits every smaller-budget table)."""
    taus = sorted(tables)
    mses = [tables[t][1].mse.upper for t in taus]
    for a, b in zip(mses, mses[1:]):
        assert b <= a * (1 + 1e-6)
    assert mses[-1] < mses[0]


def test_beats_other_tables_within_the_same_budget(tables):
    """Any table whose certified bias meets τ·E*_K has sup m no smaller than the AQP table's."""
    sol10, cert10 = tables[10]
    budget = 10 * E8
    rivals = [tables[1.5][0].values, tables[3][0].values]
    from coefgen.solvers.minimax import minimax_table

    rivals.append(minimax_table(KL, K)[0])  # the minimax table: bias E*_K, within the budget
    # perturbations of the optimum that still meet the budget must not do better
    rng = np.random.default_rng(1)
    for _ in range(5):
        rivals.append(sol10.values + rng.normal(scale=1e-4, size=K))
    checked = 0
    for v in rivals:
        c = certify(np.asarray(v, dtype=float), KL)
        if c.bias.upper <= budget:
            checked += 1
            assert cert10.mse.upper <= c.mse.upper * (1 + 1e-6)
    assert checked >= 2


def test_matches_an_independent_grid_solve():
    """cvxpy on a fixed dense grid (a relaxation: its optimum is a lower bound) agrees with AQP."""
    cp = pytest.importorskip("cvxpy")
    from coefgen.bernstein import count_pmf

    sol = solve_aqp(KL, K, tau=10, level=E8)
    th = np.linspace(0, np.pi / 2, 1500)[1:]
    p = np.unique(np.concatenate([np.sin(th) ** 2, np.logspace(-8, -2, 200)]))
    B = count_pmf(K, p)
    r = np.log(p)
    t = cp.Variable(K)
    s = cp.Variable()
    cons = [cp.abs(cp.multiply(p, B @ t - r)) <= 10 * E8]
    # m(p_i) = Σ_c p_i B_c(p_i) (t_c − r_i)², as one vectorised expression
    sub = slice(0, len(p), 2)
    Wm = p[sub, None] * B[sub]
    D = cp.square(np.ones((Wm.shape[0], 1)) @ cp.reshape(t, (1, K), order="C") - r[sub, None])
    cons += [cp.sum(cp.multiply(Wm, D), axis=1) <= s]
    cp.Problem(cp.Minimize(s), cons).solve(solver="CLARABEL")
    upper = sol.params["objective_upper"]
    assert s.value <= upper * (1 + 1e-6)  # relaxation below the certified optimum
    assert upper <= s.value * (1 + 2e-3)  # and the AQP table is essentially optimal


def test_tau_one_is_refused():
    with pytest.raises(CheckError, match="tau"):
        solve_aqp(KL, K, tau=1, level=E8)


def test_tau_below_one_is_refused():
    with pytest.raises(InputError, match="tau must be a number >= 1"):
        solve_aqp(KL, K, tau=0.9, level=E8)


def test_same_inputs_same_table():
    a = solve_aqp(KL, 6, tau=5, level=0.0089)  # any level will do: determinism only
    b = solve_aqp(KL, 6, tau=5, level=0.0089)
    assert a.values.tobytes() == b.values.tobytes() and a.values_exact == b.values_exact
    q = a.params["rounding_quantum"]
    assert np.all(np.round(a.values / q) * q == a.values)


# --------------------------------------------------------------------------- mean objective
@pytest.mark.parametrize("name", ["kl", "alpha:0.5", "alpha:3/2", "poly:1,-2,3"])
def test_mean_closed_form_matches_quadrature(name):
    from scipy.integrate import quad

    reward = parse_reward(name)
    rng = np.random.default_rng(0)
    t = rng.normal(size=7) - 1
    exact = mean_mse(t, reward)

    def m(p):
        return float(profile(t, reward, np.array([p]))[1][0])

    num = sum(quad(m, a, b, limit=200, epsabs=1e-13, epsrel=1e-11)[0] for a, b in [(0, 1e-6), (1e-6, 0.01), (0.01, 1)])
    assert exact == pytest.approx(num, rel=1e-8)
    w, g, h = mean_weights(reward, 7)
    assert np.all(w > 0)


def test_mean_objective(tables):
    sol = solve_aqp(KL, K, tau=10, objective="mean", level=E8)
    cert = certify(sol.values, KL)
    assert cert.bias.upper <= 10 * E8
    worst = tables[10][0].values
    assert mean_mse(sol.values, KL) <= mean_mse(worst, KL) * (1 + 1e-7)
    d = sol.params
    assert d["objective_lower"] <= d["objective_upper"] * (1 + 1e-9)


# --------------------------------------------------------------------------- max_mse mode
def test_max_mse_plugin():
    plug = certify(solve_plugin(KL, K).values, KL)
    sol = solve_aqp(KL, K, max_mse="plugin")
    cert = certify(sol.values, KL)
    assert cert.mse.upper <= plug.mse.upper
    assert cert.bias.upper < plug.bias.upper
    assert sol.params["objective_upper"] == pytest.approx(cert.bias.upper, rel=1e-8)


def test_max_mse_numeric_and_unreachable():
    sol = solve_aqp(KL, K, max_mse=0.1)
    assert certify(sol.values, KL).mse.upper <= 0.1
    with pytest.raises(InputError, match="below what any table reaches"):
        solve_aqp(KL, K, max_mse=1e-4)


def test_exact_reward_gives_exact_table():
    sol = solve_aqp(parse_reward("alpha:3"), 4, tau=10)
    assert sol.exact


# --------------------------------------------------------------------------- frontier
def test_frontier_points_and_plot(tmp_path):
    pytest.importorskip("coefgen.solvers.minimax")
    from coefgen.frontier import frontier_points, plot_frontier

    pts = frontier_points(KL, 6, taus=[2, 10, 50])
    aqp = [p for p in pts if p["estimator"] == "aqp"]
    assert [p["tau"] for p in aqp] == [2, 10, 50]
    assert all(b["mse"] <= a["mse"] * (1 + 1e-6) for a, b in zip(aqp, aqp[1:]))
    names = {p["estimator"] for p in pts}
    assert {"plugin", "digamma", "minimax"} <= names
    for p in pts:
        assert all(math.isfinite(v) for v in p.values() if isinstance(v, float))
    out = tmp_path / "f.png"
    plot_frontier(pts, out, title="kl, K = 6")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- alpha:a, a <= 1/2 (issue 13.2, 13.3d)
@pytest.mark.parametrize("args,needle", [
    (["-d", "alpha:0.3"], "infinite for every table"),
    (["-d", "alpha:0.45", "--max-mse", "5"], "infinite for every table"),
    (["-d", "alpha:1/3", "--tau", "3"], "infinite for every table"),
    (["-d", "alpha:0.5"], "degenerate"),
])
def test_void_worst_case_problems_refused_before_solving(tmp_path, args, needle):
    """sup m = ∞ for every table when a < 1/2, and sup m ≥ lim_{p→0} m = 4 for every table at
    a = 1/2: exit 2, one line naming the reason, nothing written (it used to write nan/inf
    into JSON, or a table with solver gap 0.19)."""
    import subprocess
    import sys

    out = tmp_path / "t.json"
    r = subprocess.run([sys.executable, "-m", "coefgen.cli", "solve", "--K", "8", "-e", "aqp", *args, "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "objective mean" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    prm = normalize_aqp_params({"tau": 10, "max_mse": 5 if "--max-mse" in args else None})
    with pytest.raises(InputError, match=needle):
        solve_aqp(parse_reward(args[1]), 8, **prm, level=1.0)


def test_alpha_half_max_mse_above_4_is_not_refused():
    from coefgen.solvers.aqp_params import check_aqp_reward

    check_aqp_reward(parse_reward("alpha:0.5"), {"objective": "worst", "max_mse": 5})
    check_aqp_reward(parse_reward("alpha:0.5"), {"objective": "mean", "max_mse": None})


def test_limit_of_m_at_zero_for_alpha():
    """lim_{p→0} m(p) = ∞ (a < 1/2), 4 (a = 1/2), 0 (a > 1/2) for any table (mpmath, p = 10^-40)."""
    import mpmath

    rng = np.random.default_rng(1)
    t = rng.normal(size=6)
    for a, lim in (("0.3", None), ("0.5", 4), ("0.7", 0)):
        reward = parse_reward(f"alpha:{a}")
        with mpmath.workdps(60):
            for p in (mpmath.mpf(10) ** -30, mpmath.mpf(10) ** -40):
                r = reward.r_mp(p)
                n = len(t) - 1
                m = p * sum(math.comb(n, c) * p**c * (1 - p) ** (n - c) * (t[c] - r) ** 2 for c in range(n + 1))
                if lim is None:
                    assert m > 1e5
                else:
                    assert abs(m - lim) < 1e-5


def test_small_alpha_mean_objective_gives_a_table():
    """objective 'mean' for alpha:0.3: ∫m is finite, the table is produced and verifies (sup m = inf is
    stated as such); its ∫m agrees with an independent quadrature."""
    import json

    import mpmath

    from coefgen.compiler import compile_table
    from coefgen.verify import verify_payload

    payload = compile_table("alpha:0.3", 8, "aqp", {"objective": "mean"})
    json.dumps(payload, allow_nan=False)  # used to raise: inf in the solver diagnostics
    assert payload["mse_bound"] == "inf"
    assert verify_payload(payload, "x") == []
    d = payload["estimator_params"]["solver"]
    assert d["sup_mse_certified"] == "inf"
    reward = parse_reward("alpha:0.3")
    t = payload["values"]
    assert float(payload["bias_bound"]) <= 10 * float(payload["minimax_level"])
    with mpmath.workdps(30):
        n = len(t) - 1

        def m(p):
            r = reward.r_mp(p)
            return p * sum(math.comb(n, c) * p**c * (1 - p) ** (n - c) * (t[c] - r) ** 2 for c in range(n + 1))

        integral = mpmath.quad(m, [0, mpmath.mpf(10) ** -6, mpmath.mpf(10) ** -3, 0.1, 1])
    assert d["objective_upper"] == pytest.approx(float(integral), rel=1e-8)
    assert d["objective_lower"] <= d["objective_upper"] * (1 + 1e-8)


# --------------------------------------------------------------------------- game modes (issue 10)
def _weighted_bias_sup(t, gamma):
    """sup_p p^γ |T(p) − log p| on an independent dense grid (uniform in √p, log-spaced near 0)."""
    from coefgen.bernstein import table_mean

    p = np.unique(np.concatenate([np.linspace(0, 1, 20001)[1:] ** 2, np.logspace(-14, -2, 3000)]))
    return float(np.max(p**gamma * np.abs(table_mean(t, p) - np.log(p))))


def test_gamma_mode_meets_its_caps_and_minimises_its_criterion():
    """max_mse = 10plugin, gamma = 0.5: certified sup m within 10x the plug-in's; the measured √p-weighted
    bias matches the stated objective and is below that of the gamma = 1 table under the same cap (the
    gamma = 1 table is feasible for the gamma = 0.5 problem, so it cannot do better) and of the plug-in."""
    plug = certify(solve_plugin(KL, K).values, KL)
    sol = solve_aqp(KL, K, max_mse="10plugin", gamma=0.5)
    cert = certify(sol.values, KL)
    assert cert.mse.upper <= 10 * plug.mse.upper
    assert sol.params["max_mse_value"] == pytest.approx(10 * plug.mse.upper, rel=1e-8)
    ours = _weighted_bias_sup(sol.values, 0.5)
    assert ours == pytest.approx(sol.params["objective_upper"], rel=1e-4)
    other = solve_aqp(KL, K, max_mse="10plugin")
    assert ours < 0.9 * _weighted_bias_sup(other.values, 0.5)
    assert ours < 0.5 * _weighted_bias_sup(solve_plugin(KL, K).values, 0.5)


def test_gamma_mode_matches_an_independent_grid_solve():
    """cvxpy on a fixed grid (a relaxation: its optimum is a lower bound) agrees with the exchange method."""
    cp = pytest.importorskip("cvxpy")
    from coefgen.bernstein import count_pmf

    sol = solve_aqp(KL, K, max_mse="10plugin", gamma=0.5)
    V = sol.params["max_mse_value"]
    th = np.linspace(0, np.pi / 2, 800)[1:]
    p = np.unique(np.concatenate([np.sin(th) ** 2, np.logspace(-14, -2, 300)]))
    B = count_pmf(K, p)
    r = np.log(p)
    t = cp.Variable(K)
    s = cp.Variable()
    Wm = p[:, None] * B
    D = cp.square(np.ones((len(p), 1)) @ cp.reshape(t, (1, K), order="C") - r[:, None])
    cons = [cp.abs(cp.multiply(np.sqrt(p), B @ t - r)) <= s, cp.sum(cp.multiply(Wm, D), axis=1) <= V]
    cp.Problem(cp.Minimize(s), cons).solve(solver="CLARABEL")
    upper = sol.params["objective_upper"]
    assert s.value <= upper * (1 + 1e-6)
    assert upper <= s.value * (1 + 1e-2)


@pytest.mark.parametrize("params", [{"max_mse": "10plugin", "gamma": 0.5}, {"max_mse": "10plugin"}])
def test_monotone_when_asked(params):
    free = solve_aqp(KL, 16, **params)
    mono = solve_aqp(KL, 16, monotone=True, **params)
    assert np.all(np.diff(mono.values) >= 0)
    assert not np.all(np.diff(free.values) >= 0)  # the constraint binds here: it is not vacuous
    # the monotone table solves a more constrained problem: its objective cannot be lower
    assert mono.params["objective_upper"] >= free.params["objective_upper"] * (1 - 1e-6)
    assert certify(mono.values, KL).mse.upper <= mono.params["max_mse_value"]


def test_gamma_mode_is_reproducible():
    a = solve_aqp(KL, K, max_mse="3plugin", gamma=0.5)
    b = solve_aqp(KL, K, max_mse="3plugin", gamma=0.5)
    assert a.values.tobytes() == b.values.tobytes()


def test_monotone_can_be_infeasible():
    """A monotone table cannot reach every bias budget: tau = 3 at K = 16 is out of reach (the
    unconstrained optimum oscillates), and the error says so."""
    with pytest.raises(CheckError, match="no monotone table"):
        solve_aqp(KL, 16, tau=3, monotone=True)


# --------------------------------------------------------------------------- proven lower bounds, refusals
def _grid_multipliers(tau, objective="worst"):
    """The multipliers of one cone program on a fixed grid (mode 'worst' or 'mean') at τ·E*_8."""
    from coefgen.solvers import aqp

    p_b = aqp._snap(np.unique(np.concatenate([aqp._theta_grid(80), np.logspace(-6, -1, 20), [1.0]])))
    p_m = aqp._snap(np.unique(np.concatenate([aqp._theta_grid(40), np.logspace(-4, -1, 8), [1.0]])))
    beta = tau * E8
    mode = "worst" if objective == "worst" else "mean"
    prog = aqp._Program(mode, KL, K, aqp._initial_table(KL, K), p_b, p_m if mode == "worst" else np.zeros(0),
                        beta=beta, beta_solve=beta, mean=mean_weights(KL, K) if mode == "mean" else None)
    status = prog.solve()[0]
    assert status == "solved"
    return prog.multipliers()


def test_dual_bound_never_exceeds_a_feasible_tables_sup_m(tables):
    """The separable dual bound at τ·E*_K is below the certified sup m of every table whose bias
    meets that budget (the AQP tables of all τ' ≤ τ), for the solver's multipliers and for
    perturbed ones, and close to the AQP table's own lower bound (it is a usable bound)."""
    from coefgen.solvers.aqp import best_dual_bound, separable_dual_bound

    rng = np.random.default_rng(7)
    for tau in (3, 10, 30):
        beta = tau * E8
        mult = _grid_multipliers(tau)
        lb = best_dual_bound(KL, K, beta, mult)
        feasible = [c.mse.upper for t2, (_, c) in tables.items() if t2 <= tau]
        assert 0 < lb <= min(feasible)
        assert lb >= tables[tau][0].params["objective_lower"] * (1 - 2e-3)
        (mu, p_m), p_b, lam, _ = mult
        for _ in range(10):
            b2 = separable_dual_bound(KL, K, beta, mu * rng.uniform(0.5, 1.5, mu.shape), p_m,
                                      lam * rng.uniform(0.5, 1.5, lam.shape), p_b)
            assert b2 <= min(feasible)
    # mean objective: below the integral of m of every table within the budget
    mult = _grid_multipliers(10, objective="mean")
    lb = best_dual_bound(KL, K, 10 * E8, mult, mean=mean_weights(KL, K))
    sol = solve_aqp(KL, K, tau=10, objective="mean", level=E8)
    assert 0 < lb <= mean_mse(sol.values, KL) and lb >= sol.params["objective_lower"] * (1 - 1e-3)
    assert lb <= min(mean_mse(tables[t][0].values, KL) for t in (1.5, 3, 10))


def test_dual_bound_is_valid_in_high_precision(monkeypatch):
    """On a tiny instance the float64 bound is below the dual function computed at 60 digits from
    exact binomials, and that value is the minimum of the Lagrangian (the closed form is right),
    so below the Lagrangian, hence below sup m, of any table within the budget."""
    mp = pytest.importorskip("mpmath")
    from coefgen.solvers.aqp import separable_dual_bound

    monkeypatch.setattr(mp.mp, "dps", 60)
    k = 4
    rng = np.random.default_rng(3)
    p_m = np.array([0.003, 0.05, 0.2, 0.5, 0.9])
    p_b = np.array([1e-4, 0.01, 0.1, 0.3, 0.7, 1.0])
    mu = rng.uniform(0.1, 1, len(p_m))
    lam = rng.normal(scale=0.1, size=len(p_b))
    nu = rng.uniform(0, 0.02, k - 1)
    beta = 0.01
    got = separable_dual_bound(KL, k, beta, mu, p_m, lam, p_b, nu)

    def B(c, p):
        p = mp.mpf(float(p))
        return mp.binomial(k - 1, c - 1) * p ** (c - 1) * (1 - p) ** (k - c)

    def lagrangian(t):
        m = sum(mp.mpf(float(w)) * mp.mpf(float(p)) * sum(B(c, p) * (t[c - 1] - mp.log(mp.mpf(float(p)))) ** 2
                                                        for c in range(1, k + 1)) for w, p in zip(mu, p_m))
        b = sum(mp.mpf(float(l)) * (mp.mpf(float(q)) * (sum(B(c, q) * t[c - 1] for c in range(1, k + 1))
                                                      - mp.log(mp.mpf(float(q))))) for l, q in zip(lam, p_b))
        mono = sum(mp.mpf(float(nu[c])) * (t[c] - t[c + 1]) for c in range(k - 1))
        return m + b + mono - beta * sum(abs(mp.mpf(float(x))) for x in lam)

    # the exact dual function: minimise the Lagrangian coordinate by coordinate (closed form)
    tstar, g = [], mp.mpf(0)
    for c in range(1, k + 1):
        a = sum(mp.mpf(float(w)) * mp.mpf(float(p)) * B(c, p) for w, p in zip(mu, p_m))
        f = sum(mp.mpf(float(w)) * mp.mpf(float(p)) * B(c, p) * mp.log(mp.mpf(float(p))) for w, p in zip(mu, p_m))
        lc = sum(mp.mpf(float(x)) * mp.mpf(float(q)) * B(c, q) for x, q in zip(lam, p_b))
        lc += (mp.mpf(float(nu[c - 1])) if c <= k - 1 else 0) - (mp.mpf(float(nu[c - 2])) if c >= 2 else 0)
        tstar.append((2 * f - lc) / (2 * a))
    g = lagrangian(tstar)
    total_mu = sum(mp.mpf(float(w)) for w in mu)
    exact = g / total_mu
    assert exact > 0, (got, exact)  # these multipliers prove something
    assert exact - 1e-6 <= got <= exact
    for _ in range(5):  # t* minimises the Lagrangian
        t = [x + mp.mpf(float(d)) for x, d in zip(tstar, rng.normal(scale=0.1, size=k))]
        assert lagrangian(t) >= g


def test_refusal_states_a_proven_lower_bound(tables, monkeypatch):
    """A refusal for want of precision names a proven lower bound on sup m (below the certified
    sup m of the optimal table, and close to it) and the plug-in's sup m."""
    import re

    from coefgen.solvers import aqp

    def refuse(t, slack, K):
        raise aqp._Refused("test: entries too large")

    monkeypatch.setattr(aqp, "_check_precision", refuse)
    with pytest.raises(CheckError) as err:
        solve_aqp(KL, K, tau=10, level=E8)
    msg = str(err.value)
    assert "\n" not in msg and "test: entries too large" in msg and "4 attempts" in msg
    got = float(re.search(r"has sup m >= (\S+) \(proven", msg).group(1))
    best = float(tables[10][1].mse.upper)
    assert 0.9 * best <= got <= best * 1.001  # printed to 3 digits
    assert "plug-in table's sup m is" in msg


def test_solver_infeasibility_is_not_reported_as_an_infeasible_budget(monkeypatch):
    """tau > 1 always admits the minimax table: a solver's 'infeasible' is a numerical verdict."""
    from coefgen.solvers import aqp

    monkeypatch.setattr(aqp._Program, "solve", lambda self: ("infeasible", None, None, None, 0))
    with pytest.raises(CheckError) as err:
        solve_aqp(KL, K, tau=1.5, level=E8)
    msg = str(err.value)
    assert "exists" in msg and "minimax table" in msg and "infeasible even" not in msg


def test_a_wider_slack_gives_a_certified_table_with_a_valid_lower_bound(tables, monkeypatch):
    """When the first slack is refused, the retry's table meets τ·E*_K and its objective_lower,
    evaluated at τ·E*_K (not at the solver's tighter budget), is below every feasible sup m."""
    from coefgen.solvers import aqp

    real = aqp._check_precision
    first = 1.5 * aqp.SLACK * 10 * E8  # only the first attempt's slack is below this

    def refuse_first(t, slack, K):
        if slack < first:
            raise aqp._Refused("test: first slack refused")
        real(t, slack, K)

    monkeypatch.setattr(aqp, "_check_precision", refuse_first)
    sol = solve_aqp(KL, K, tau=10, level=E8)
    cert = certify(sol.values, KL)
    d = sol.params
    assert cert.bias.upper <= 10 * E8
    assert d["bias_budget_solved"] == pytest.approx(10 * E8 * (1 - aqp.RETRY_SLACKS[0]), rel=1e-9)
    best = float(tables[10][1].mse.upper)
    assert d["objective_lower"] <= best  # a lower bound of the problem at τ·E*_K
    assert d["objective_upper"] == pytest.approx(float(cert.mse.upper), rel=1e-8)
    assert 0 <= d["gap"] <= aqp.RETRY_GAP


# --------------------------------------------------------------------------- futile fallbacks, warm retries
def _force_almost(monkeypatch, split_only=False, near=False):
    """Make every Clarabel solve that reaches Solved report AlmostSolved instead (its iterates
    unchanged), or only those of split programs (``split_only``: the non-split fallback still
    solves). The reported primal residual is 1 (far from solved) unless ``near`` (then it is the
    solver's own: nearly solved, aqp._near_solved). Returns the list of (split, reported status)."""
    import clarabel

    real = clarabel.DefaultSolver
    calls = []

    class Reported:
        def __init__(self, sol, status):
            self._sol, self.status = sol, status
            if not near:
                self.r_prim = 1.0

        def __getattr__(self, name):
            return getattr(self._sol, name)

    class Solver:
        def __init__(self, P, q, A, b, cones, settings):
            self._split = isinstance(cones[0], clarabel.ZeroConeT)  # the split form's equality rows come first
            self._solver = real(P, q, A, b, cones, settings)

        def solve(self):
            sol = self._solver.solve()
            if sol.status == clarabel.SolverStatus.Solved and (self._split or not split_only):
                sol = Reported(sol, clarabel.SolverStatus.AlmostSolved)
            calls.append((self._split, str(sol.status)))
            return sol

    monkeypatch.setattr(clarabel, "DefaultSolver", Solver)
    return calls


def _record_programs(monkeypatch):
    """Record every _Program built (split and fallback) with its solve's result: a list of
    (program, (status, x, ...))."""
    from coefgen.solvers import aqp

    built = []

    class Recorded(aqp._Program):
        def solve(self):
            out = super().solve()
            built.append((self, out))
            return out

    monkeypatch.setattr(aqp, "_Program", Recorded)
    return built


def test_a_futile_fallback_is_tried_once_per_solve(tables, monkeypatch):
    """Every solve ends AlmostSolved: the non-split fallback is built and solved in the first round
    only (it did not reach Solved), every later split program, in both attempts, keeps its own
    reduced-accuracy iterate; the retry's table meets the budget with a proven gap."""
    from coefgen.solvers import aqp

    calls = _force_almost(monkeypatch)
    built = _record_programs(monkeypatch)
    sol = solve_aqp(KL, K, tau=10, level=E8)
    split = [p for p, _ in built if p.split]
    fallbacks = [p for p, _ in built if not p.split]
    assert len(fallbacks) == 1 and fallbacks[0]._kw["beta_solve"] == split[0]._kw["beta_solve"]
    assert len(split) > aqp.MAX_ALMOST  # the first attempt's rounds and at least one of the retry
    assert all(out[0] == "almost" for _, out in built)
    # one Clarabel solve per split program, plus the fallback's two variants in the first round
    assert len(calls) == len(split) + 2 and [s for s, _ in calls[:3]] == [True, False, False]
    assert all(s for s, _ in calls[3:])
    cert = certify(sol.values, KL)
    assert cert.bias.upper <= 10 * E8 and 0 <= sol.params["gap"] <= aqp.RETRY_GAP
    assert sol.params["objective_lower"] <= float(tables[10][1].mse.upper)


def test_a_fallback_that_solves_is_kept(monkeypatch):
    """Split programs end AlmostSolved but the fallback reaches Solved: it is tried in every round
    (the state is not futile) and the solve is the first attempt's, as without the state."""
    from coefgen.solvers import aqp

    _force_almost(monkeypatch, split_only=True)
    built = _record_programs(monkeypatch)
    sol = solve_aqp(KL, K, tau=10, level=E8)
    split = [p for p, _ in built if p.split]
    fallbacks = [out[0] for p, out in built if not p.split]
    assert len(split) >= 2 and fallbacks == ["solved"] * len(split)
    assert sol.params["bias_budget_solved"] == pytest.approx(10 * E8 * (1 - aqp.SLACK), rel=1e-9)


def test_a_solved_program_ignores_the_fallback_state(monkeypatch):
    """A program whose first variant reaches Solved gives the same result, bit for bit, with a
    futile fallback state or none, and builds no fallback."""
    from coefgen.solvers import aqp

    p_b = aqp._snap(np.unique(np.concatenate([aqp._theta_grid(80), np.logspace(-6, -1, 20), [1.0]])))
    p_m = aqp._snap(np.unique(np.concatenate([aqp._theta_grid(40), np.logspace(-4, -1, 8), [1.0]])))
    built = _record_programs(monkeypatch)
    futile = aqp._Fallback()
    futile.futile = True
    outs = []
    for state in (None, futile):
        prog = aqp._Program("worst", KL, K, aqp._initial_table(KL, K), p_b, p_m, beta=10 * E8,
                            beta_solve=10 * E8 * (1 - aqp.SLACK), fallback=state)
        outs.append(prog.solve())
        assert outs[-1][0] == "solved" and prog.dual_source[0] is prog and prog.other_duals == []
    assert all(p.split for p, _ in built)
    (s0, x0, o0, d0, n0), (s1, x1, o1, d1, n1) = outs
    assert np.array_equal(x0, x1) and (o0, d0, n0) == (o1, d1, n1)


def test_a_retry_after_reduced_accuracy_starts_from_the_refused_attempt(monkeypatch):
    """The first attempt is refused after MAX_ALMOST reduced-accuracy rounds; the retry's first
    round is built on that attempt's last grids (enlarged by its exchange), from its last iterate
    re-rounded to the retry's quantum, with its next sigma."""
    from coefgen.solvers import aqp

    _force_almost(monkeypatch)
    built = _record_programs(monkeypatch)
    solve_aqp(KL, K, tau=10, level=E8)
    split = [(p, out) for p, out in built if p.split]
    first = [(p, out) for p, out in split if p._kw["beta_solve"] == split[0][0]._kw["beta_solve"]]
    assert len(first) == aqp.MAX_ALMOST
    last, (_, x, *_) = first[-1]
    retry = split[len(first)][0]
    beta = 10 * E8
    s1, s2 = beta - last._kw["beta_solve"], beta - retry._kw["beta_solve"]
    assert s2 == pytest.approx(aqp.RETRY_SLACKS[0] * beta, rel=1e-9)
    for i in (4, 5):  # the grids as the refused round had them, larger than the initial ones
        assert retry._args[i] is last._args[i] and len(retry._args[i]) > len(first[0][0]._args[i])
    t_ref_last = last._args[3]
    t_last = aqp.round_table(last.table(x, t_ref_last), aqp.quantum_for(s1))
    assert np.array_equal(retry._args[3], aqp.round_table(t_last, aqp.quantum_for(s2)))
    assert retry.sigma == aqp._next_sigma(t_last, t_ref_last, beta)
    cold = aqp.round_table(aqp._initial_table(KL, K), aqp.quantum_for(s2))
    assert np.max(np.abs(retry._args[3] - cold)) > 1e-3


def test_a_retry_after_another_refusal_starts_afresh(monkeypatch):
    """A first attempt refused for another reason (here: precision) is retried from the initial
    table and grids, as before."""
    from coefgen.solvers import aqp

    real = aqp._check_precision
    first_slack = 1.5 * aqp.SLACK * 10 * E8

    def refuse_first(t, slack, K):
        if slack < first_slack:
            raise aqp._Refused("test: first slack refused")
        real(t, slack, K)

    monkeypatch.setattr(aqp, "_check_precision", refuse_first)
    built = _record_programs(monkeypatch)
    solve_aqp(KL, K, tau=10, level=E8)
    a, b = built[0][0], built[1][0]
    assert a._kw["beta_solve"] != b._kw["beta_solve"]  # one round of the first attempt, then the retry
    for i in (4, 5):
        assert np.array_equal(a._args[i], b._args[i])
    s2 = 10 * E8 - b._kw["beta_solve"]
    assert np.array_equal(b._args[3], aqp.round_table(aqp._initial_table(KL, K), aqp.quantum_for(s2)))
    assert b.sigma == 1.0


def test_refusal_bound_holds_with_skipped_fallbacks(tables, monkeypatch):
    """Every solve ends AlmostSolved and no retry may accept (RETRY_GAP = 0): the refusal still
    states a proven lower bound from the split programs' reduced-accuracy multipliers, below the
    certified sup m of the optimal table and close to it."""
    import re

    from coefgen.solvers import aqp

    _force_almost(monkeypatch)
    built = _record_programs(monkeypatch)
    monkeypatch.setattr(aqp, "RETRY_GAP", 0.0)
    with pytest.raises(CheckError) as err:
        solve_aqp(KL, K, tau=10, level=E8)
    assert sum(not p.split for p, _ in built) == 1
    got = float(re.search(r"has sup m >= (\S+) \(proven", str(err.value)).group(1))
    best = float(tables[10][1].mse.upper)
    assert 0.9 * best <= got <= best * 1.001  # printed to 3 digits


def test_a_nearly_solved_split_program_skips_the_fallback(tables, monkeypatch):
    """Every solve ends AlmostSolved with the residuals of a solved program (within NEAR_SOLVED
    times the tolerances): no non-split fallback is ever built, and the (retried) solve still
    writes a table within the budget with a proven gap."""
    from coefgen.solvers import aqp

    calls = _force_almost(monkeypatch, near=True)
    built = _record_programs(monkeypatch)
    sol = solve_aqp(KL, K, tau=10, level=E8)
    assert built and all(p.split for p, _ in built) and all(s for s, _ in calls)
    assert len(calls) == len(built)  # one Clarabel solve per program
    cert = certify(sol.values, KL)
    assert cert.bias.upper <= 10 * E8 and 0 <= sol.params["gap"] <= aqp.RETRY_GAP


def test_near_solved_reads_residuals_and_gap():
    from types import SimpleNamespace

    from coefgen.solvers.aqp import NEAR_SOLVED, _near_solved

    tol = 1e-8
    ok = dict(obj_val=3.7, obj_val_dual=3.7 - 3.7 * 1e-8, r_prim=5e-8, r_dual=2e-10)
    assert _near_solved(SimpleNamespace(**ok), tol)
    for k, v in (("r_prim", 2 * NEAR_SOLVED * tol), ("r_dual", 2 * NEAR_SOLVED * tol),
                 ("obj_val_dual", 3.7 * (1 - 2 * NEAR_SOLVED * tol))):
        assert not _near_solved(SimpleNamespace(**{**ok, k: v}), tol)
