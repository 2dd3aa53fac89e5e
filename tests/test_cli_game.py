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
    assert doc["schema"] == "coefgen.game/1" and doc["K"] == 8 and doc["prompts"] == 16 and doc["answers"] == 10
    t0 = doc["tables"][0]
    q = make_targets("zipf:1.5:10", 16)
    mf = mean_field_equilibrium(np.array(payload["values"]), q, "kl")
    assert t0["equilibrium"]["kl"] == pytest.approx(float(np.mean(mf.kl)), rel=1e-12)
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
