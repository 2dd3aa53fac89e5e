"""coefgen game: the command line of the alignment game."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from coefgen import __version__
from coefgen.cli import main
from coefgen.compiler import compile_table
from coefgen.game import make_targets, mean_field_equilibrium
from coefgen.writers import render, write_atomic


def run(*args):
    return CliRunner().invoke(main, ["game", *args])


def table_file(tmp_path, divergence, K, estimator, **params):
    payload = compile_table(divergence, K, estimator, params)
    path = tmp_path / f"{payload['table_id']}.json"
    write_atomic(path, render(payload, "json", __version__))
    return str(path), payload


def test_a_small_game_with_json_and_plot(tmp_path):
    path, payload = table_file(tmp_path, "kl", 8, "plugin")
    out_json, out_png = tmp_path / "g.json", tmp_path / "g.png"
    args = [path, "kl/digamma/K=8", "--prompts", "16", "--steps", "60", "--lr", "0.3,1", "--seeds", "2",
            "--json", str(out_json), "-o", str(out_png)]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "kl-plugin-K8" in r.output and "kl-digamma-K8" in r.output and "95% CI over seeds" in r.output
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "coefgen.game/2" and doc["K"] == 8 and doc["prompts"] == 16 and doc["answers"] == 10
    t0 = doc["tables"][0]
    q = make_targets("zipf:1.5:10", 16)
    mf = mean_field_equilibrium(np.array(payload["values"]), q, "kl")
    assert doc["baseline"] == "none"            # an old file without a baseline field is a none table
    assert t0["equilibrium"]["kl"] == pytest.approx(float(np.mean(mf.kl)), rel=1e-12)
    assert t0["equilibrium_none"] == t0["equilibrium"] and t0["table_baseline"] == "none"
    assert t0["sha256"] == payload["sha256"]
    assert [r_["lr"] for r_ in t0["runs"]] == [0.3, 1.0]
    assert t0["best_lr"] == min(t0["runs"], key=lambda r_: r_["final_kl"])["lr"]
    assert isinstance(t0["runs"][0]["final_kl"], float) and len(t0["runs"][0]["steps_to_eps"]) == 2
    curve = t0["runs"][0]["curve"]
    assert curve["step"][0] == 0 and curve["step"][-1] == 60
    assert all(a <= b for a, b in zip(curve["kl_q05"], curve["kl_q95"]))
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # reproducible: the same command writes the same bytes
    first = out_json.read_bytes()
    assert run(*args).exit_code == 0
    assert out_json.read_bytes() == first


def test_mean_field_only(tmp_path):
    r = run("kl/plugin/K=8", "euclidean/exact/K=8", "--mean-field-only")
    assert r.exit_code == 2 and "different divergences" in r.output
    r = run("euclidean/exact/K=8", "--mean-field-only", "--target", "dirichlet:1:5", "--prompts", "3")
    assert r.exit_code == 0, r.output
    assert "euclidean-exact-K8" in r.output


@pytest.mark.parametrize("args,msg", [
    (["kl/plugin/K=8", "kl/plugin/K=16"], "different K"),
    (["kl/plugin/K=8", "alpha:3/exact/K=8"], "different divergences"),
    (["kl/plugin/K=8", "--lr", "0"], "finite and > 0"),
    (["kl/plugin/K=8", "--lr", "-1"], "finite and > 0"),
    (["kl/plugin/K=8", "--lr", "nan"], "finite and > 0"),
    (["kl/plugin/K=8", "--lr", "inf"], "finite and > 0"),
    (["kl/plugin/K=8", "--lr", "x"], "not a number"),
    (["kl/plugin/K=8", "--lr", "0.3,,1"], "comma-separated"),
    (["kl/plugin/K=8", "--target", "zipf:1:1"], "M >= 2"),
    (["kl/plugin/K=8", "--target", "dirichlet:0:5"], "alpha"),
    (["kl/plugin/K=8", "--target", "nothing.json"], "nor an existing file"),
    (["kl/plugin/K=8", "--steps", "0"], "--steps"),
    (["kl/plugin/K=8", "--steps", "10000000"], "--steps"),
    (["kl/plugin/K=8", "--prompts", "0"], "--prompts"),
    (["kl/plugin/K=8", "--seeds", "0"], "--seeds"),
    (["kl/plugin/K=8", "--eps", "-1"], "--eps"),
    (["kl/plugin/K=8", "--prompts", "100000", "--steps", "1000000"], "exceeds the cap"),
    (["kl/plugin/K=8", "--mean-field-only", "-o", "x.png"], "--mean-field-only"),
    (["kl/nosuch/K=8"], "unknown estimator"),
    (["kl/plugin/K=x"], "not an integer"),
    (["kl/aqp/tau/K=8"], "param=value"),
    (["kl/exact/K=8"], "not a polynomial reward"),
    (["not-a-table"], "not a file, nor a spec"),
])
def test_bad_input_exits_2(args, msg):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert msg in r.output
    assert "Traceback" not in r.output


def test_bad_target_file_and_tampered_table(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps([[0.5, 0.4]]))
    r = run("kl/plugin/K=4", "--target", str(bad))
    assert r.exit_code == 2 and "sums to" in r.output
    path, _ = table_file(tmp_path, "kl", 4, "plugin")
    doc = json.loads(open(path).read())
    doc["values"][0] = -9.0
    open(path, "w").write(json.dumps(doc))
    r = run(path, "--mean-field-only")
    assert r.exit_code == 2 and "sha256" in r.output


# ---------------------------------------------------------------------------- baselines (issue 16.5)


def baseline_file(tmp_path, baseline, K=8):
    """A loo/mean table file as the compiler writes them: the K-1 solution padded, field ``baseline``, sealed."""
    from coefgen import payload as pl

    p = compile_table("kl", K - 1, "plugin", {})
    p["values"] = p["values"] + [p["values"][-1]]
    p["values_exact"] = p["values_exact"] + [p["values_exact"][-1]]
    p["K"], p["baseline"], p["schema"] = K, baseline, pl.SCHEMA
    p["table_id"] = f"kl-plugin-{baseline}-K{K}"
    p = pl.seal({k: v for k, v in p.items() if k != "sha256"})
    path = tmp_path / f"{p['table_id']}.json"
    path.write_text(pl.canonical_json(p) + "\n")
    return str(path), p


def test_the_file_sets_the_baseline_and_a_contradiction_is_refused(tmp_path):
    loo, _ = baseline_file(tmp_path, "loo")
    mean, _ = baseline_file(tmp_path, "mean")
    r = run(loo, "--mean-field-only")
    assert r.exit_code == 0, r.output
    assert "baseline loo" in r.output and "eq. KL (loo)" in r.output and "eq. KL (no baseline)" in r.output
    for args, msg in [([loo, "--baseline", "mean"], "contradicts"), ([loo, "--baseline", "none"], "contradicts"),
                      ([loo, "--baseline", "grpo"], "contradicts"), ([loo, mean], "different baselines"),
                      ([mean, "--baseline", "grpo", "--mean-field-only"], "no mean-field equilibrium")]:
        r = run(*args)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1
    path, _ = table_file(tmp_path, "kl", 8, "plugin")               # an old file: none
    r = run(path, "--baseline", "loo", "--mean-field-only")
    assert r.exit_code == 2 and "which is for baseline none" in r.output
    # a mean table under grpo is the opt-in measurement of GRPO's std step: allowed
    r = run(mean, "--baseline", "grpo", "--prompts", "4", "--steps", "20", "--lr", "0.1")
    assert r.exit_code == 0, r.output
    # a spec without baseline= is undeclared: any baseline (here the no-baseline table played under LOO)
    r = run("kl/plugin/K=8", "--baseline", "loo", "--mean-field-only", "--prompts", "2")
    assert r.exit_code == 0 and "baseline loo" in r.output


def test_a_loo_spec_is_the_K_minus_1_table_padded_and_its_equilibrium_is_the_K_minus_1_none_one(tmp_path):
    out = tmp_path / "g.json"
    r = run("kl/plugin/baseline=loo/K=8", "--mean-field-only", "--prompts", "4", "--json", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    t0 = doc["tables"][0]
    assert doc["baseline"] == "loo" and t0["id"] == "kl-plugin-loo-K8" and t0["table_baseline"] == "loo"
    q = make_targets("zipf:1.5:10", 4)
    ref = mean_field_equilibrium(np.log(np.arange(1, 8) / 7), q, "kl")          # the 7-sample plug-in, no baseline
    assert t0["equilibrium"]["kl"] == pytest.approx(ref.kl_mean, rel=1e-9, abs=1e-12)


def test_grpo_reports_its_own_long_run_kl_and_never_a_no_baseline_heading(tmp_path):
    """Under grpo the summary's KL columns are GRPO's (measured) or named by the estimator they belong to."""
    out = tmp_path / "g.json"
    r = run("kl/plugin/K=6", "--baseline", "grpo", "--prompts", "32", "--steps", "400", "--lr", "0.05,0.2",
            "--seeds", "2", "--json", str(out))
    assert r.exit_code == 0, r.output
    head = next(x for x in r.output.splitlines() if x.startswith("table "))
    assert "long-run KL (grpo)" in head and "final KL (grpo)" in head
    assert "eq. KL (mean, no std)" in head and "eq. KL (no baseline)" in head
    assert "eq. KL  " not in head and "eq. KL (grpo)" not in head
    doc = json.loads(out.read_text())
    t0 = doc["tables"][0]
    assert t0["equilibrium"] is None and t0["equilibrium_mean"]["baseline"] == "mean"
    lr = t0["long_run"]
    assert lr["lr"] == 0.05 and lr["from_step"] == 200 and lr["kl"] > 0 and lr["kl_ci95"] > 0
    # the long-run KL is that of the runs at the smallest lr: recompute it from the engine (same seeds)
    from coefgen.game import stochastic_run

    q = make_targets("zipf:1.5:10", 32)
    tails = [float(np.mean(stochastic_run(np.log(np.arange(1, 7) / 6), q, steps=400, lr=0.05, baseline="grpo",
                                          seed=s, tail_from=200).tail_kl)) for s in (0, 1)]
    assert lr["kl"] == pytest.approx(np.mean(tails), rel=1e-12)
    # drift: the tail's two halves; 'settled' iff they agree within DRIFT_TOL, and the summary says so otherwise
    from coefgen.cli_game import DRIFT_TOL

    run0 = t0["runs"][0]
    assert lr["drift"] == pytest.approx(run0["tail_kl_late"] / run0["tail_kl_early"] - 1, rel=1e-12)
    assert lr["settled"] == (abs(lr["drift"]) <= DRIFT_TOL)
    row = next(x for x in r.output.splitlines() if x.startswith("kl-plugin-K6 ") and "seed=" not in x)
    assert ("drifting" in row) == (not lr["settled"])


def test_non_convergence_is_reported_in_the_summary_and_the_json(tmp_path, monkeypatch):
    """A mean field that cannot settle (a step budget of 2, a non-monotone table) is flagged, not shown as a number."""
    import functools

    from coefgen import game

    monkeypatch.setattr(game, "mean_field_equilibrium", functools.partial(game.mean_field_equilibrium, max_steps=2))
    monkeypatch.setattr(game, "_branch_equilibrium", lambda *a, **k: None)
    out = tmp_path / "g.json"
    r = run("kl/minimax/K=8", "--mean-field-only", "--target", "dirichlet:0.3:6", "--prompts", "3",
            "--baseline", "loo", "--json", str(out))
    assert r.exit_code == 0, r.output
    row = next(x for x in r.output.splitlines() if x.startswith("kl-minimax-K8"))
    assert "NOT CONVERGED" in row
    eq = json.loads(out.read_text())["tables"][0]["equilibrium"]
    assert eq["converged"] is False and eq["prompts_not_converged"] >= 1


def test_work_cap_counts_the_mean_field(tmp_path):
    """Issue 20.5: one prompt with 1e5 answers at K = 64, 1 step: no stochastic work to speak of, but the
    equilibria (2 x 1e5 x 64 x MF_MAX_STEPS x MF_WEIGHT) exceed the cap: refused before any solve, cap named."""
    from coefgen.cli_game import MAX_WORK, MF_WEIGHT
    from coefgen.game import MF_MAX_STEPS

    q = tmp_path / "q.npy"
    np.save(q, np.full((1, 100_000), 1e-5))
    assert 100_000 * 1 * 1 < MAX_WORK < 2 * MF_WEIGHT * 100_000 * 64 * MF_MAX_STEPS
    for extra in ([], ["--mean-field-only"]):
        r = run("kl/aqp/tau=10/K=64", "--target", str(q), "--prompts", "1", "--steps", "1", "--lr", "1", *extra)
        assert r.exit_code == 2 and "exceeds the cap 5e+10" in r.output and "mean field" in r.output, r.output
    # the no-baseline game computes one equilibrium per table: half the work, still over
    r = run("kl/aqp/tau=10/K=64", "--target", str(q), "--prompts", "1", "--steps", "1", "--baseline", "none",
            "--mean-field-only")
    assert r.exit_code == 2 and "exceeds the cap" in r.output
    # and a game just within it runs
    r = run("kl/plugin/K=8", "--target", "zipf:1.5:1000", "--prompts", "1", "--steps", "1", "--lr", "1")
    assert r.exit_code == 0, r.output


def test_a_one_row_target_file_repeated_over_the_prompts_stays_within_the_answer_cap(tmp_path):
    q = tmp_path / "q.npy"
    np.save(q, np.full((1, 100_000), 1e-5))
    r = run("kl/plugin/K=8", "--target", str(q), "--mean-field-only")           # 256 prompts x 1e5 answers
    assert r.exit_code == 2 and "exceeds the cap 4000000" in r.output


# --- issue 20.9 / 20.12 / 20.13 / 20.14: destinations before the run, strict specs and targets ---

def _targets(tmp_path):
    np.save(tmp_path / "complex.npy", np.array([[0.5 + 1j, 0.5]]))
    (tmp_path / "bigint.json").write_text("[[1" + "0" * 400 + ", 0]]")
    (tmp_path / "dup.json").write_text('{"a": 1, "a": 2}')
    (tmp_path / "deep.json").write_text("[" * 10_000 + "]" * 10_000)
    (tmp_path / "many.json").write_text("[[" + "0," * 6_000_000 + "1]]")
    (tmp_path / "t.json").write_text("[[0.5, 0.5]]")


GAME_BAD = [
    (["kl/plugin/K=\u0668"], "not an integer (ASCII digits)"),
    (["kl/plugin/K=1_0"], "not an integer (ASCII digits)"),
    (["kl/aqp/tau=3/tau=5/K=8"], "'tau' is given twice"),
    (["kl/plugin/K=4", "--steps", "\u0661\u0660"], "not a valid integer"),
    (["kl/plugin/K=4", "--lr", "\u0663"], "not a number"),
    (["kl/plugin/K=4", "--target", "{d}/complex.npy"], "must be real numbers"),
    (["kl/plugin/K=4", "--target", "{d}/bigint.json"], "beyond float64"),
    (["kl/plugin/K=4", "--target", "{d}/dup.json"], "duplicate key"),
    (["kl/plugin/K=4", "--target", "{d}/deep.json"], "nested too deeply"),
    (["kl/plugin/K=4", "--target", "{d}/many.json"], "JSON values"),
    (["kl/plugin/K=4", "--target", "{d}/t.json", "--json", "{d}/t.json"], "is the target"),
    (["{d}/tab.json", "--target", "{d}/t.json", "-o", "{d}/tab.json"], "is the table"),
    (["kl/plugin/K=4", "--json", "{d}/x", "-o", "{d}/x"], "are the same file"),
    (["kl/plugin/K=4", "--json", ""], "the output path is empty"),
    (["kl/plugin/K=4", "-o", "-"], "binary"),
    (["kl/plugin/K=4", "--json", "{d}/dir"], "it is a directory"),
]


@pytest.mark.parametrize("args,needle", GAME_BAD, ids=[f"{i}" for i in range(len(GAME_BAD))])
def test_game_bad_input_exits_2_before_any_work(tmp_path, monkeypatch, args, needle):
    import coefgen.cli_game

    _targets(tmp_path)
    (tmp_path / "dir").mkdir()
    table_file(tmp_path, "kl", 4, "plugin")
    (tmp_path / "kl-plugin-K4.json").rename(tmp_path / "tab.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    monkeypatch.setattr(coefgen.cli_game, "run_game", lambda *a, **k: pytest.fail("the game ran"))
    r = run(*[a.format(d=tmp_path) for a in args], "--steps", "10") if "--steps" not in args else \
        run(*[a.format(d=tmp_path) for a in args])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_game_json_dash_is_stdout(tmp_path):
    r = run("kl/plugin/K=4", "--prompts", "2", "--steps", "10", "--lr", "1", "--json", "-")
    assert r.exit_code == 0 and json.loads(r.stdout)["K"] == 4
