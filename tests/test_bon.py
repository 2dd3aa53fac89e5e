"""Best-of-n (coefgen.bon, coefgen bon): exact formulas against Monte Carlo, closed forms,
mpmath, the bounds; quantile rewards against direct counts and the binomial law; bad input."""

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from coefgen import bon
from coefgen.cli import main

# a reference with ties: rewards 1 < 2 (×2) < 3 (×3); one outcome of probability 0
P_TIES = np.array([0.15, 0.1, 0.25, 0.05, 0.3, 0.15, 0.0])
R_TIES = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0])


def random_reference(rng, N, levels):
    p = rng.dirichlet(np.full(N, 0.7))
    r = rng.integers(0, levels, N).astype(float)
    return p / math.fsum(p.tolist()), r


def simulate_bon(rng, p, r, n, M):
    """M best-of-n draws, ties broken by a uniform random key among the tied top draws."""
    draws = rng.choice(p.size, size=(M, n), p=p)
    rew = r[draws]
    top = rew == rew.max(axis=1, keepdims=True)
    key = np.where(top, rng.random((M, n)), -1.0)
    return draws[np.arange(M), key.argmax(axis=1)]


# ------------------------------------------------------------------ exact vs Monte Carlo

@pytest.mark.parametrize("n", [2, 5])
def test_bon_distribution_and_win_rate_match_monte_carlo(n):
    rng = np.random.default_rng(1234 + n)
    M = 200_000
    sel = simulate_bon(rng, P_TIES, R_TIES, n, M)
    pn = bon.bon_probs(P_TIES, R_TIES, n)
    freq = np.bincount(sel, minlength=P_TIES.size) / M
    se = np.sqrt(pn * (1 - pn) / M)
    # 5 binomial standard errors per outcome (7 outcomes: a false alarm has probability < 1e-5)
    assert np.all(np.abs(freq - pn) <= 5 * se + 1e-12), (freq, pn)
    assert pn[-1] == 0.0 and np.count_nonzero(sel == P_TIES.size - 1) == 0
    # within a tie class the choice is distributed like pi_ref
    assert pn[4] / pn[3] == pytest.approx(0.3 / 0.05, rel=1e-12)
    # win rate: Y ~ pi_n against an independent Y' ~ pi_ref, a tie counting 1/2
    other = rng.choice(P_TIES.size, size=M, p=P_TIES)
    score = np.where(R_TIES[sel] > R_TIES[other], 1.0, np.where(R_TIES[sel] == R_TIES[other], 0.5, 0.0))
    sw = bon.bon_sweep(bon.prepare_reference(P_TIES, R_TIES), [n])
    assert abs(score.mean() - sw["win_rate"][0]) <= 5 * score.std() / math.sqrt(M)
    # the class-level KL equals Σ_y pi_n(y) log(pi_n(y)/pi_ref(y)) over outputs
    m = pn > 0
    assert sw["kl"][0] == pytest.approx(float(np.sum(pn[m] * np.log(pn[m] / P_TIES[m]))), rel=1e-12)


def test_kl_estimator_expectation_matches_monte_carlo():
    rng = np.random.default_rng(77)
    n, M = 4, 200_000
    sel = simulate_bon(rng, P_TIES, R_TIES, n, M)
    vals = bon.kl_estimator(P_TIES[sel], n)
    sw = bon.bon_sweep(bon.prepare_reference(P_TIES, R_TIES), [n])
    assert abs(vals.mean() - sw["kl_estimator"][0]) <= 5 * vals.std() / math.sqrt(M)


# ------------------------------------------------------------------ closed forms and limits

def test_n_equal_1_is_the_reference():
    rng = np.random.default_rng(5)
    for _ in range(20):
        p, r = random_reference(rng, int(rng.integers(1, 40)), 6)
        ref = bon.prepare_reference(p, r)
        sw = bon.bon_sweep(ref, [1])
        assert abs(sw["kl"][0]) <= 1e-14
        assert abs(sw["win_rate"][0] - 0.5) <= 1e-15
        assert abs(sw["kl_estimator"][0]) <= 1e-14  # KL_hat(eps) at n = 1 is 0 for every eps
        assert np.allclose(bon.bon_probs(p, r, 1), p / p.sum(), rtol=1e-13, atol=0)


@pytest.mark.parametrize("a,n", [(0.3, 1), (0.3, 2), (0.01, 7), (0.9, 50), (1e-6, 1000)])
def test_two_outcomes_closed_form(a, n):
    """pi_ref = (1 − a, a), rewards (0, 1). Best-of-n picks the top outcome unless all n draws
    are the low one: pi_n = ((1−a)^n, 1 − (1−a)^n). Hence (by hand)
      KL  = (1−a)^n (n−1) log(1−a) + (1 − (1−a)^n) log((1 − (1−a)^n)/a)
      win = (1 − (1−a)^n)(1 − a) + ½[(1 − (1−a)^n) a + (1−a)^n (1 − a)]
      KL_hat(a) − KL = (1−a)^n (log n − (n−1)/n)   (the paper's estimator at the top outcome)."""
    import mpmath
    from fractions import Fraction

    with mpmath.workdps(40):  # the hand formulas, evaluated at the exact normalised input
        top = Fraction(a) / (Fraction(1 - a) + Fraction(a))
        A = mpmath.mpf(top.numerator) / top.denominator
        lo_mp = (1 - A) ** n
        hi_mp = 1 - lo_mp
        kl = float(lo_mp * (n - 1) * mpmath.log(1 - A) + hi_mp * mpmath.log(hi_mp / A))
        win = float(hi_mp * (1 - A) + (hi_mp * A + lo_mp * (1 - A)) / 2)
        lo, hi = float(lo_mp), float(hi_mp)
    ref = bon.prepare_reference([1 - a, a], [0.0, 1.0])
    sw = bon.bon_sweep(ref, [n])
    assert sw["kl"][0] == pytest.approx(kl, rel=1e-11, abs=1e-15)
    assert sw["win_rate"][0] == pytest.approx(win, rel=1e-13)
    assert np.allclose(bon.bon_probs([1 - a, a], [0.0, 1.0], n), [lo, hi], rtol=1e-12, atol=0)
    est_top = float(bon.kl_estimator(a, n))
    assert est_top - kl == pytest.approx(lo * (math.log(n) - (n - 1) / n), rel=1e-9, abs=1e-15)


def test_two_tied_outcomes_are_the_reference():
    ref = bon.prepare_reference([0.2, 0.8], [1.0, 1.0])
    sw = bon.bon_sweep(ref, [1, 3, 100])
    assert np.all(np.abs(sw["kl"]) <= 1e-15)
    assert np.all(sw["win_rate"] == 0.5)


@pytest.mark.parametrize("n", [3, 4, 16, 64])
def test_equiprobable_outcomes_approach_the_bound_at_rate_1_over_N2(n):
    """Uniform on N distinct rewards: N·pi_n(j) is the mean of g(x) = n x^(n−1) over the j-th
    cell of width 1/N, so KL_N = Σ (1/N) φ(mean g) with φ(g) = g log g, and by Taylor
    (φ'' = 1/g, cell variance of g ≈ g'²/(12N²)) the gap to ∫ φ(g) = log n − (n−1)/n is
    ∫ g'²/g dx / (24 N²) = n(n−1)²/(24 (n−2) N²) + O(1/N³) for n ≥ 3."""
    rate = n * (n - 1) ** 2 / (24 * (n - 2))
    for N, tol in [(1000, 3e-3), (10_000, 3e-4)]:
        probs, rewards = bon.reference_family(f"uniform:{N}")
        sw = bon.bon_sweep(bon.prepare_reference(probs, rewards), [n])
        gap = sw["kl_bound"][0] - sw["kl"][0]
        assert gap > 0
        assert gap * N * N == pytest.approx(rate, rel=tol)


def test_bounds_hold_on_random_references_with_ties():
    rng = np.random.default_rng(2024)
    ns = [1, 2, 3, 5, 10, 31, 100, 1000, 10**4]
    for trial in range(60):
        p, r = random_reference(rng, int(rng.integers(1, 60)), int(rng.integers(1, 30)))
        sw = bon.bon_sweep(bon.prepare_reference(p, r), ns)
        assert np.all(sw["kl"] <= sw["kl_bound"] + 1e-13)
        assert np.all(sw["kl"] >= -1e-13)
        assert np.all(sw["win_rate"] <= sw["win_rate_bound"] + 1e-15)
        assert np.all(sw["win_rate"] >= 0.5 - 1e-15)


def test_heavy_top_outcome_is_far_below_the_bound():
    """geometric:2:20: the best outcome has pi_ref = 1/2 (≈), so KL ≤ log 2 for every n
    (pi_n is supported where pi_ref is, and KL ≤ log(1/pi_ref(top)) as n → ∞)."""
    probs, rewards = bon.reference_family("geometric:2:20")
    sw = bon.bon_sweep(bon.prepare_reference(probs, rewards), [16, 1000])
    top = probs[-1]
    assert np.all(sw["kl"] <= -math.log(top) + 1e-12)
    assert sw["kl_bound"][0] - sw["kl"][0] > 1.0


@pytest.mark.parametrize("n", [1, 2, 3, 17, 500, 10**4])
def test_float_path_matches_50_digit_mpmath(n):
    rng = np.random.default_rng(99 + n)
    p, r = random_reference(rng, 40, 12)
    pn_mp, kl_mp, win_mp = bon.bon_probs_mp(p, r, n)
    sw = bon.bon_sweep(bon.prepare_reference(p, r), [n])
    assert abs(sw["kl"][0] - float(kl_mp)) <= 1e-13
    assert abs(sw["win_rate"][0] - float(win_mp)) <= 1e-14
    pn = bon.bon_probs(p, r, n)
    ref = np.array([float(x) for x in pn_mp])
    big = ref > 1e-290
    assert np.all(np.abs(pn[big] - ref[big]) <= 1e-11 * ref[big])
    assert np.all(pn[~big] <= 1e-289)


def test_sweep_blocks_and_skipped_classes_do_not_change_results():
    probs, rewards = bon.reference_family("zipf:0.5:3000")
    ref = bon.prepare_reference(probs, rewards)
    ns = [5000, 1, 2, 1500, 3000, 77]
    one_block = bon.bon_sweep(ref, ns, block_cells=10**9)
    per_n = bon.bon_sweep(ref, ns, block_cells=1)  # one n per block: low classes skipped at large n
    for key in ("kl", "win_rate", "kl_estimator"):
        assert np.allclose(one_block[key], per_n[key], rtol=1e-13, atol=1e-15)
        for i, n in enumerate(ns):
            assert bon.bon_sweep(ref, [n])[key][0] == pytest.approx(per_n[key][i], rel=1e-13, abs=1e-15)


def test_kl_estimator_limits():
    # eps → 0: the selected output is "continuous-like", KL_hat → log n − (n−1)/n; eps = 1: 0
    for n in [2, 10, 1000]:
        assert float(bon.kl_estimator(1e-300, n)) == pytest.approx(float(bon.kl_bound(n)), rel=1e-12)
        assert float(bon.kl_estimator(1.0, n)) == 0.0


def test_families():
    p, r = bon.reference_family("zipf:1:4")
    h = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert np.allclose(p, [1 / h, 1 / (2 * h), 1 / (3 * h), 1 / (4 * h)], rtol=1e-15)
    assert list(r) == [1, 2, 3, 4]
    p, r = bon.reference_family("geometric:0.5:3")
    assert np.allclose(p, [4 / 7, 2 / 7, 1 / 7], rtol=1e-15)
    p, _ = bon.reference_family("uniform:8")
    assert np.all(p == 0.125)


# ------------------------------------------------------------------ quantile rewards

def _direct_counts(samples, refs):
    B, m = samples.shape
    out = np.zeros((B, m), dtype=int)
    for b in range(B):
        for i in range(m):
            out[b, i] = 1 + sum(1 for x in refs[b] if x <= samples[b, i])
    return out


def test_quantile_counts_match_a_direct_count_with_ties():
    rng = np.random.default_rng(3)
    B, k, m = 30, 9, 5
    refs = rng.integers(0, 6, (B, k)).astype(float)  # many ties, including with the samples
    samples = rng.integers(-1, 7, (B, m)).astype(float)
    c = bon.bon_quantile_counts(samples, refs)
    assert np.array_equal(c, _direct_counts(samples, refs))
    c1 = bon.bon_quantile_counts(samples[:, 0], refs)
    assert c1.shape == (B,) and np.array_equal(c1, c[:, 0])


def _table(K, estimator):
    from coefgen.compiler import compile_table
    from coefgen.runtime import RewardTable

    return RewardTable(compile_table("kl", K, estimator, {}))


def test_quantile_rewards_look_up_the_table_and_check_K():
    table = _table(9, "digamma")
    rng = np.random.default_rng(8)
    refs = rng.normal(size=(12, 8))
    samples = rng.normal(size=(12, 3))
    out = bon.bon_quantile_rewards(table, samples, refs)
    assert np.array_equal(out, table.values[_direct_counts(samples, refs) - 1])
    with pytest.raises(ValueError, match="K = 9.*k = 7.*K = k \\+ 1 = 8"):
        bon.bon_quantile_rewards(table, samples, refs[:, :7])
    with pytest.raises(ValueError, match="NaN"):
        bon.bon_quantile_rewards(table, np.full((12, 3), np.nan), refs)


@pytest.mark.parametrize("estimator", ["digamma", "plugin", "aqp"])
def test_quantile_reward_mean_is_log_p_within_the_certified_bias(estimator):
    """E[t_c] for c − 1 ~ Bin(k, p) is an exact binomial sum; the table certifies
    sup_p p·|E[t_c] − log p| ≤ bias_bound."""
    k = 8
    table = _table(k + 1, estimator)
    bound = float(table.payload["bias_bound"])
    p = np.concatenate([np.logspace(-8, -1, 50), np.linspace(0.1, 1.0, 200)])
    mean = bon.expected_estimate(table.values, p)
    assert np.all(p * np.abs(mean - np.log(p)) <= bound * (1 + 1e-9))
    # and E[t_c] really is that binomial sum: Monte Carlo through the helper on continuous
    # rewards, where the sample sits at reference quantile p_le = 0.3
    rng = np.random.default_rng(11)
    B = 100_000
    refs = rng.random((B, k))
    vals = bon.bon_quantile_rewards(table, np.full(B, 0.3), refs)
    exact = float(bon.expected_estimate(table.values, 0.3)[0])
    assert abs(vals.mean() - exact) <= 5 * vals.std() / math.sqrt(B)


def test_quantile_rewards_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    table = _table(5, "plugin")
    refs = torch.tensor([[0.1, 0.5, 0.5, 0.9]])
    out = bon.bon_quantile_rewards(table, torch.tensor([0.5]), refs)
    # ties count as <=: 0.1, 0.5, 0.5 are <= 0.5, so c = 1 + 3 = 4 (and numpy agrees)
    assert isinstance(out, torch.Tensor) and out.tolist() == [float(table.values[3])]
    same = bon.bon_quantile_rewards(table, np.array([0.5]), refs.numpy())
    assert out.tolist() == same.tolist()


def test_rank_plugin_is_coefgens_plugin_table():
    for k in [1, 4, 16]:
        assert np.allclose(bon.rank_plugin_table(k), _table(k + 1, "plugin").values, rtol=1e-15, atol=0)
    assert np.allclose(bon.clamped_plugin_table(4), np.log([1 / 4, 1 / 4, 2 / 4, 3 / 4, 1.0]))


def test_expected_estimate_is_the_binomial_sum():
    from math import comb

    t = np.array([-3.0, -1.5, -0.7, -0.2, 0.0])
    k = t.size - 1
    for p in [0.0, 0.13, 0.5, 0.97, 1.0]:
        direct = sum(t[j] * comb(k, j) * p**j * (1 - p) ** (k - j) for j in range(k + 1))
        assert float(bon.expected_estimate(t, p)[0]) == pytest.approx(direct, rel=1e-13, abs=1e-15)


def test_vbon_equilibrium_kl_against_a_direct_sum():
    """KL(pi_T || pi_log) on uniform:N, from the definition, in plain Python; offsets cancel."""
    k, n, N = 5, 4, 300
    t = bon.rank_plugin_table(k)
    T = [float(bon.expected_estimate(t, j / N)[0]) for j in range(1, N + 1)]
    wa = [math.exp((n - 1) * x) for x in T]
    wb = [(j / N) ** (n - 1) for j in range(1, N + 1)]
    za, zb = sum(wa), sum(wb)
    direct = sum(a / za * math.log((a / za) / (b / zb)) for a, b in zip(wa, wb))
    assert bon.vbon_equilibrium_kl(t, n, N) == pytest.approx(direct, rel=1e-10)
    assert bon.vbon_equilibrium_kl(t + 3.7, n, N) == pytest.approx(direct, rel=1e-10)
    assert bon.vbon_equilibrium_kl(t, 1, N) == pytest.approx(0.0, abs=1e-15)  # n = 1: both are pi_ref


# ------------------------------------------------------------------ CLI

def _run(*args):
    return CliRunner().invoke(main, list(args))


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_FILES = [
    ("neg.json", '{"probs": [0.5, -0.1, 0.6], "rewards": [1, 2, 3]}', "probability 1 (0-based) is negative"),
    ("sum.json", '{"probs": [0.5, 0.4], "rewards": [1, 2]}', "sum to 0.9"),
    ("sum.csv", "prob,reward\n0.5,1\n0.5000001,2\n", "sum to 1.0000001"),
    ("nan.json", '{"probs": [0.5, 0.5], "rewards": [1, NaN]}', "reward 1 (0-based) is nan"),
    ("nan.csv", "prob,reward\n0.5,nan\n0.5,2\n", "reward 0 (0-based) is nan"),
    ("inf.csv", "prob,reward\n0.5,1\n0.5,inf\n", "reward 1 (0-based) is inf"),
    ("nanp.csv", "prob,reward\nnan,1\n0.5,2\n", "probability 0 (0-based) is nan"),
    ("len.json", '{"probs": [0.5, 0.5], "rewards": [1]}', "2 probabilities but 1 rewards"),
    ("empty.json", '{"probs": [], "rewards": []}', "empty"),
    ("bad.json", '{"probs": [0.5, 0.5], "rewards": [1, 2]', "invalid JSON"),
    ("str.json", '{"probs": [0.5, "0.5"], "rewards": [1, 2]}', "probs[1] is \"0.5\", not a number"),
    ("keys.json", '{"p": [1.0], "rewards": [1]}', "expected a JSON object"),
    ("hdr.csv", "p,r\n1,1\n", "header must be prob,reward"),
    ("cols.csv", "prob,reward\n1,1,3\n", "line 2: expected 2 fields"),
    ("num.csv", "prob,reward\n1,abc\n", "line 2"),
    ("nothing.csv", "", "empty CSV"),
    # issue 20.12 / 20.14: exit 2 with the reason, strict numbers, no duplicate keys
    ("field.csv", "prob,reward\n0.5," + "1" * 200_000 + "\n0.5,2\n", "line 2: not a valid CSV row"),
    ("bigint.json", '{"probs": [0.5, 0.5], "rewards": [1, 1' + "0" * 400 + ']}', "rewards[1] is an integer of 401 digits"),
    ("deep.json", '{"probs": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ("dup.json", '{"probs": [0.5, 0.5], "rewards": [1, 2], "probs": [1.0]}', "duplicate key 'probs'"),
    ("arabic.csv", "prob,reward\n٠.٥,1\n0.5,2\n", "line 2"),
    ("under.csv", "prob,reward\n0.5,1_0\n0.5,2\n", "line 2"),
    ("fullwidth.csv", "prob,reward\n0.5,１\n0.5,2\n", "line 2"),
    ("exp.csv", "prob,reward\n0.5,1e-99999999\n0.5,2\n", "line 2"),
]


@pytest.mark.parametrize("name,text,needle", BAD_FILES)
def test_bad_reference_files_exit_2_with_one_line(tmp_path, name, text, needle):
    path = _write(tmp_path, name, text)
    out = tmp_path / "out.json"
    r = _run("bon", "--reference", path, "--n", "4", "--json", str(out))
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.output and not out.exists()


BAD_ARGS = [
    (["--reference", "uniform:4", "--n", "0"], "n must be >= 1"),
    (["--reference", "uniform:4", "--n", "-3..5"], "n must be >= 1"),
    (["--reference", "uniform:4", "--n", "5..2"], "empty range"),
    (["--reference", "uniform:4", "--n", "x"], "--n must be an integer"),
    (["--reference", "uniform:4", "--n", str(10**10)], "MAX_N"),
    (["--reference", "uniform:2000000"], "MAX_OUTCOMES"),
    (["--reference", "uniform:100000", "--n", "1..5000"], "MAX_SWEEP_WORK"),
    (["--reference", "uniform:4", "--n", "1..200000"], "MAX_SWEEP_VALUES"),
    (["--reference", "zipf:1:x"], "N: 'x' is not an exact decimal"),
    (["--reference", "uniform:１０"], "ASCII digits"),
    (["--reference", "zipf:nan:10"], "not an exact decimal"),
    (["--reference", "uniform:10", "--n", "٢"], "ASCII digits"),
    (["--reference", "zipf:4"], "zipf:s:N"),
    (["--reference", "geometric:-1:4"], "r must be > 0"),
    (["--reference", "poisson:3"], "not a family (uniform:N, zipf:s:N, geometric:r:N)"),
    (["--reference", "no-such-file.json"], "no such file"),
    (["--reference", "uniform:4", "--n", "1..3", "--per-output"], "--per-output needs one n"),
]


@pytest.mark.parametrize("args,needle", BAD_ARGS)
def test_bad_arguments_exit_2_with_one_line(args, needle):
    r = _run("bon", *args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_cli_json_png_and_text(tmp_path):
    ref = _write(tmp_path, "ref.csv", "prob,reward\n0.15,1\n0.1,2\n0.25,2\n0.05,3\n0.3,3\n0.15,3\n")
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    r = _run("bon", "--reference", ref, "--n", "1..8", "--json", str(out), "-o", str(png))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["reference"]["tie_classes"] == 3 and doc["reference"]["outcomes"] == 6
    assert [row["n"] for row in doc["sweep"]] == list(range(1, 9))
    expect = bon.bon_sweep(bon.prepare_reference(P_TIES[:6], R_TIES[:6]), range(1, 9))
    for i, row in enumerate(doc["sweep"]):
        for key in ("kl", "kl_bound", "kl_estimator", "win_rate", "win_rate_bound"):
            assert isinstance(row[key], float)
            assert row[key] == pytest.approx(float(expect[key][i]), rel=1e-12, abs=1e-15)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "win rate" in r.stdout and "3 distinct rewards" in r.stdout
    # same inputs → byte-identical outputs; --json - writes only JSON to stdout
    first = out.read_bytes()
    _run("bon", "--reference", ref, "--n", "1..8", "--json", str(out))
    assert out.read_bytes() == first
    r = _run("bon", "--reference", ref, "--n", "1..8", "--json", "-")
    assert r.stdout.encode() == first
    r = _run("bon", "--reference", ref, "--n", "3", "--per-output", "--json", "-")
    outs = json.loads(r.stdout)["sweep"][0]["outputs"]
    pn = bon.bon_probs(P_TIES[:6], R_TIES[:6], 3)
    assert [o["index"] for o in outs] == [0, 1, 2, 3, 4, 5]
    assert np.allclose([o["bon_prob"] for o in outs], pn, rtol=1e-15)


def test_bon_module_imports_without_click_or_matplotlib():
    import subprocess
    import sys

    code = ("import sys; import coefgen.bon; "
            "bad = [m for m in ('click', 'matplotlib', 'scipy', 'mpmath') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert r.returncode == 0, r.stdout + r.stderr
