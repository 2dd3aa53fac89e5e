"""Tables for trainers that subtract a group baseline (coefgen.baseline, DESIGN §10).

The expected policy gradient of the trainer's own advantage is enumerated exactly (Fractions)
over every answer sequence of a small group: it does not use coefgen.game or the solvers.
"""

import itertools
import json
import os
from fractions import Fraction
from math import comb

import pytest
from click.testing import CliRunner

from coefgen.baseline import baseline_failures, effective_payload, with_baseline
from coefgen.build import build, check
from coefgen.cli import main
from coefgen.compiler import compile_table
from coefgen.payload import seal
from coefgen.runtime import load
from coefgen.spec import load_spec, parse_spec
from coefgen.errors import InputError
from coefgen.writers import render
from coefgen import __version__


def expected_gradient(values, probs, K, baseline):
    """E[(1/K) Σ_i A_i ∇_θ log π(z_i)] for a softmax policy π over len(probs) answers (∇ log π(z)
    = e_z − π), rewards a_i = t[c_i], advantage A_i = a_i − baseline: enumerated exactly."""
    M = len(probs)
    grad = [Fraction(0)] * M
    for seq in itertools.product(range(M), repeat=K):
        w = Fraction(1)
        for z in seq:
            w *= probs[z]
        a = [values[seq.count(z) - 1] for z in seq]
        S = sum(a)
        for i, z in enumerate(seq):
            if baseline == "none":
                A = a[i]
            elif baseline == "loo":
                A = a[i] - (S - a[i]) / (K - 1)
            elif baseline == "mean":
                A = a[i] - S / K
            else:  # std normalisation is not linear: not modelled here
                raise AssertionError(baseline)
            for m in range(M):
                grad[m] += w * A * ((1 if m == z else 0) - probs[m]) / K
    return grad


def mean_of_table(values, p):
    """T(p) = Σ_c t_c C(n−1, c−1) p^(c−1) (1−p)^(n−c) for an n-entry table, exactly."""
    n = len(values)
    return sum(values[c - 1] * comb(n - 1, c - 1) * p ** (c - 1) * (1 - p) ** (n - c) for c in range(1, n + 1))


def gradient_of_mean(T, probs):
    """Σ_z π_z T(π_z) (e_z − π): the expected gradient of a cost whose mean for answer z is T(π_z)."""
    M = len(probs)
    return [sum(probs[z] * T(probs[z]) * ((1 if m == z else 0) - probs[m]) for z in range(M)) for m in range(M)]


PROBS = [Fraction(1, 2), Fraction(1, 3), Fraction(1, 6)]


@pytest.mark.parametrize("K", [3, 4, 5])
def test_loo_gradient_is_the_first_K_minus_1_entries_as_a_table(K):
    t = [Fraction(v) for v in ("-3", "-5/4", "-1/3", "2/7", "1/2")[:K]]
    g = expected_gradient(t, PROBS, K, "loo")
    inner = t[:-1]
    assert g == gradient_of_mean(lambda p: mean_of_table(inner, p), PROBS)
    # t_K never matters under LOO
    assert expected_gradient(t[:-1] + [Fraction(1000)], PROBS, K, "loo") == g
    # the group mean is (K−1)/K times LOO, exactly
    assert expected_gradient(t, PROBS, K, "mean") == [x * Fraction(K - 1, K) for x in g]
    # and without a baseline the K-table itself acts (a different gradient: the effect is real)
    assert expected_gradient(t, PROBS, K, "none") == gradient_of_mean(lambda p: mean_of_table(t, p), PROBS)
    assert expected_gradient(t, PROBS, K, "none") != g


@pytest.mark.parametrize("baseline", ["loo", "mean"])
def test_exact_table_is_exactly_unbiased_under_its_baseline(baseline):
    K = 5
    pl = compile_table("euclidean", K, "exact", baseline=baseline)
    t = [Fraction(v) for v in pl["values_exact"]]
    scale = Fraction(K - 1, K) if baseline == "mean" else 1
    truth = [x * scale for x in gradient_of_mean(lambda p: p - 1, PROBS)]  # r(p) = p − 1
    assert expected_gradient(t, PROBS, K, baseline) == truth
    # the no-baseline exact K-table is not exact under the baseline
    t_none = [Fraction(v) for v in compile_table("euclidean", K, "exact")["values_exact"]]
    assert expected_gradient(t_none, PROBS, K, baseline) != truth
    assert expected_gradient(t_none, PROBS, K, "none") == gradient_of_mean(lambda p: p - 1, PROBS)


def test_alpha3_exact_loo_unbiased():
    K = 4  # alpha:3 has degree 2: the K−1 = 3 table is exact
    pl = compile_table("alpha:3", K, "exact", baseline="loo")
    t = [Fraction(v) for v in pl["values_exact"]]
    assert expected_gradient(t, PROBS, K, "loo") == gradient_of_mean(lambda p: (p * p - 1) / 2, PROBS)


@pytest.mark.parametrize("baseline", ["loo", "mean"])
def test_kl_file_claims_are_those_of_the_estimator_the_trainer_runs(baseline):
    """The file's bias claim bounds sup p|T_eff(p) − log p|, T_eff the LOO-effective mean
    (enumerated above to be the K−1 table), checked on a dense grid independently of certify."""
    import numpy as np

    K = 7
    pl = compile_table("kl", K, "aqp", {"max_mse": "4plugin", "gamma": 0.75}, baseline=baseline)
    assert pl["baseline"] == baseline and pl["effective_K"] == K - 1 and pl["table_id"].endswith(f"-{baseline}-K{K}")
    vals = [Fraction(v) for v in pl["values"]]
    probs = [Fraction(2, 5), Fraction(3, 10), Fraction(3, 10)]
    # the gradient the trainer takes is that of the first K−1 float64 entries as a table
    g = expected_gradient(vals, probs, K, baseline)
    scale = Fraction(K - 1, K) if baseline == "mean" else 1
    assert g == [x * scale for x in gradient_of_mean(lambda p: mean_of_table(vals[:-1], p), probs)]
    # dense independent evaluation of that table's weighted bias
    p = np.linspace(1e-6, 1, 200001)
    from scipy.stats import binom

    T = sum(float(v) * binom.pmf(c - 1, K - 2, p) for c, v in enumerate(vals[:-1], start=1))
    sup = float(np.max(p * np.abs(T - np.log(p))))
    assert sup <= float(pl["bias_bound"]) * (1 + 1e-12)
    assert sup >= float(pl["bias_lower"]) * (1 - 1e-4)
    # and it is the K−1 no-baseline table's claim, word for word
    inner = compile_table("kl", K - 1, "aqp", {"max_mse": "4plugin", "gamma": 0.75})
    for f in ("bias_bound", "bias_lower", "variance_bound", "mse_bound", "minimax_level", "minimax_level_bracket"):
        assert pl[f] == inner[f]


def test_with_baseline_and_effective_payload_are_inverse():
    inner = compile_table("kl", 5, "aqp", {"tau": 10})
    for b in ("loo", "mean"):
        p = with_baseline(inner, b)
        assert p["K"] == 6 and p["values"][:5] == inner["values"] and p["values"][5] == inner["values"][4]
        assert effective_payload(p) == inner
        assert baseline_failures(p) == []
    assert effective_payload(inner) is inner
    with pytest.raises(ValueError):
        with_baseline(with_baseline(inner, "loo"), "loo")


def _resealed(p, **changes):
    q = {k: v for k, v in p.items() if k != "sha256"}
    q.update(changes)
    return seal(q)


def test_verify_refuses_a_tampered_baseline_file(tmp_path):
    p = compile_table("euclidean", 6, "exact", baseline="loo")
    cases = {
        "tK": _resealed(p, values=p["values"][:-1] + [0.5], values_exact=p["values_exact"][:-1] + ["1/2"]),
        "effK": _resealed(p, effective_K=6),
        "as_mean": _resealed(p, baseline="mean"),  # the id says loo
        "as_none": _resealed(p, baseline="none"),  # claims of the K−1 table on a K-table
        "entry": _resealed(p, values=[p["values"][0] + 1e-3] + p["values"][1:],
                           values_exact=[repr(p["values"][0] + 1e-3)] + p["values_exact"][1:]),
    }
    runner = CliRunner()
    good = tmp_path / "good.json"
    good.write_bytes(render(p, "json", __version__))
    assert runner.invoke(main, ["verify", str(good)]).exit_code == 0
    for name, q in cases.items():
        f = tmp_path / f"{name}.json"
        f.write_bytes(render(q, "json", __version__))
        res = runner.invoke(main, ["verify", str(f)])
        assert res.exit_code == 1, (name, res.output)


def test_formats_carry_the_baseline(tmp_path):
    p = compile_table("euclidean", 4, "exact", baseline="mean")
    for fmt in ("json", "npz"):
        f = tmp_path / f"t.{fmt}"
        f.write_bytes(render(p, fmt, __version__))
        t = load(f)
        assert t.baseline == "mean" and t.K == 4
    h = render(p, "c", __version__).decode()
    assert '#define COEFGEN_EUCLIDEAN_EXACT_MEAN_K4_BASELINE "mean"' in h


def test_old_schema_loads_as_no_baseline(tmp_path):
    p = compile_table("euclidean", 4, "exact")
    old = {k: v for k, v in p.items() if k not in ("sha256", "baseline")}
    old["schema"] = "coefgen.table/1"
    f = tmp_path / "old.json"
    f.write_text(json.dumps(seal(old)))
    assert load(f).baseline == "none"
    bad = dict(old, baseline="loo")
    f.write_text(json.dumps(seal(bad)))
    with pytest.raises(ValueError, match="has no baseline field"):
        load(f)


def test_cli_solve_baseline_and_refusals(tmp_path):
    runner = CliRunner()
    out = tmp_path / "t.json"
    res = runner.invoke(main, ["solve", "-d", "euclidean", "--K", "4", "-e", "exact", "--baseline", "loo", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["table_id"] == "euclidean-exact-loo-K4"
    res = runner.invoke(main, ["solve", "-d", "kl", "--K", "2", "-e", "aqp", "--baseline", "mean", "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "K >= 3" in res.output and not (tmp_path / "x.json").exists()
    res = runner.invoke(main, ["solve", "-d", "alpha:3", "--K", "3", "-e", "exact", "--baseline", "loo", "-o", str(tmp_path / "y.json")])
    assert res.exit_code == 2 and "K" in res.output  # the K−1 = 2 table cannot be exact for degree 2


SPEC = """
output: out
formats: [json, npz, c]
tables:
  - divergence: kl
    estimator: aqp
    tau: 10
    K: [4, 5]
  - divergence: kl
    estimator: aqp
    tau: 10
    baseline: [loo, mean]
    K: [5, 6, 8]
"""


def test_build_solves_each_inner_table_once(tmp_path, monkeypatch):
    import coefgen.compiler

    calls = []
    real = coefgen.compiler.solve

    def counting(reward, K, estimator, params):
        calls.append(K)
        return real(reward, K, estimator, params)

    monkeypatch.setattr(coefgen.compiler, "solve", counting)
    (tmp_path / "s.yaml").write_text(SPEC)
    spec = load_spec(str(tmp_path / "s.yaml"))
    res = build(spec, jobs=1, quiet=True)
    assert not res.failures
    # none K = 4, 5 (written); loo/mean K = 5, 6 from them; loo/mean K = 8 from a K = 7 table not written
    assert sorted(calls) == [4, 5, 7]
    names = sorted(os.listdir(tmp_path / "out"))
    assert "kl-aqp-loo-K8.json" in names and "kl-aqp-mean-K5.h" in names
    assert not any("-K7." in n for n in names)
    for b in ("loo", "mean"):
        t = load(tmp_path / "out" / f"kl-aqp-{b}-K5.json")
        assert list(t.values[:4]) == list(load(tmp_path / "out" / "kl-aqp-K4.json").values)
    # a second build solves nothing, check agrees, and verify re-proves every file
    calls.clear()
    res = build(spec, jobs=1, quiet=True)
    assert calls == [] and all(r.status == "cached" for r in res.results)
    assert CliRunner().invoke(main, ["verify", str(tmp_path / "out" / "manifest.json")]).exit_code == 0
    assert check(spec, jobs=1, quiet=True) == []


def test_spec_baseline_errors():
    base = "tables:\n  - divergence: kl\n    estimator: aqp\n    K: {k}\n    baseline: {b}\n"
    with pytest.raises(InputError, match="unknown baseline"):
        parse_spec(base.format(k=4, b="grpo"), "s.yaml", None)
    with pytest.raises(InputError, match=r"s.yaml:4: .*K >= 3"):
        parse_spec(base.format(k="2..4", b="loo"), "s.yaml", None)
    with pytest.raises(InputError, match="listed twice"):
        parse_spec(base.format(k=4, b="[loo, loo]"), "s.yaml", None)
    spec = parse_spec(base.format(k="[3, 4]", b="[none, mean]"), "s.yaml", None)
    assert [r.table_id for r in spec.tables] == ["kl-aqp-K3", "kl-aqp-K4", "kl-aqp-mean-K3", "kl-aqp-mean-K4"]
