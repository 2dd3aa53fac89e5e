"""CLI: bad input gives one line and exit 2, writes nothing; the main paths work end to end."""

import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from coefgen import __version__


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "coefgen.cli", *args], capture_output=True, text=True, cwd=cwd)


BAD = [
    (["solve", "-d", "alpha:0", "--K", "4", "-e", "exact"], "inadmissible"),
    (["solve", "-d", "alpha:-2", "--K", "4", "-e", "plugin"], "inadmissible"),
    (["solve", "-d", "wasserstein", "--K", "4", "-e", "plugin"], "unknown divergence"),
    (["solve", "-d", "poly:1,2,3", "--K", "2", "-e", "exact"], "needs K >= 3"),
    (["solve", "-d", "kl", "--K", "8", "-e", "exact"], "not a polynomial"),
    (["solve", "-d", "euclidean", "--K", "1", "-e", "exact"], "too small"),
    (["solve", "-d", "euclidean", "--K", "0", "-e", "exact"], "too small"),
    (["solve", "-d", "euclidean", "--K", "1000000", "-e", "exact"], "absurdly large"),
    (["solve", "-d", "euclidean", "--K", "100001", "-e", "exact"], "absurdly large"),
    (["solve", "-d", "kl", "--K", "4096", "-e", "plugin"], "the limit is 2048"),
    (["solve", "-d", "euclidean", "--K", "4", "-e", "digamma"], "kl only"),
    (["solve", "-d", "euclidean", "--K", "4", "-e", "exact", "--tau", "3"], "aqp only"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--tau", "abc"], "tau must be a number >= 1"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--max-mse", "-1"], "max_mse must be positive"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--gamma", "0.5"], "needs max_mse"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--max-mse", "plugin", "--gamma", "2"], "gamma must be"),
    (["solve", "-d", "kl", "--K", "4", "-e", "plugin", "--monotone"], "aqp only"),
    (["solve", "-d", "euclidean", "--K", "4", "-e", "exact", "--format", "npz"], "binary"),
    (["solve", "-d", "euclidean", "--K", "x", "-e", "exact"], "not a valid integer"),
    (["solve", "-d", "euclidean", "--K", "4", "-e", "best"], "best"),
    # issue 13: huge/tiny numbers, non-ASCII digits, parameter modes and ranges (exit 2, fast)
    (["solve", "-d", "poly:1e99999999", "--K", "4", "-e", "exact"], "exponent outside"),
    (["solve", "-d", "poly:1e200", "--K", "4", "-e", "exact"], "exponent outside"),
    (["solve", "-d", "poly:1e20,1", "--K", "4", "-e", "exact"], "outside the supported range"),
    (["solve", "-d", "poly:1e-20,1", "--K", "4", "-e", "exact"], "outside the supported range"),
    (["solve", "-d", "poly:" + ",".join(["1"] * 3000), "--K", "4", "-e", "plugin"], "at most 2048"),
    (["solve", "-d", "alpha:1e10", "--K", "4", "-e", "plugin"], "outside the supported range"),
    (["solve", "-d", "alpha:1e-5", "--K", "4", "-e", "plugin"], "outside the supported range"),
    (["solve", "-d", "alpha:\u0661", "--K", "4", "-e", "plugin"], "ASCII digits"),
    (["solve", "-d", "alpha:\uff13", "--K", "4", "-e", "plugin"], "ASCII digits"),
    (["solve", "-d", "poly:\uff11,1", "--K", "4", "-e", "exact"], "ASCII digits"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--tau", "\uff13"], "tau must be a number"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--tau", "3", "--max-mse", "1"], "give one, not both"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--tau", "1e6"], "supported range 1 <= tau <= 10000"),
    (["solve", "-d", "kl", "--K", "4", "-e", "aqp", "--max-mse", "1e308"], "supported range 0 < V <= 1e+06"),
    (["solve", "-d", "euclidean", "--K", "4096", "-e", "exact"], "the limit is 2048"),
    (["solve", "-d", "alpha:0.3", "--K", "4", "-e", "aqp"], "sup_p m(p) is infinite for every table"),
    # issue 20.14: integer options read ASCII digits only (click's int() also reads '٨', '８' and '1_0')
    (["solve", "-d", "euclidean", "--K", "\u0664", "-e", "exact"], "not a valid integer (ASCII digits"),
    (["solve", "-d", "euclidean", "--K", "\uff14", "-e", "exact"], "not a valid integer (ASCII digits"),
    (["solve", "-d", "euclidean", "--K", "1_0", "-e", "exact"], "not a valid integer (ASCII digits"),
    (["solve", "-d", "euclidean", "--K", "9" * 5000, "-e", "exact"], "not a valid integer (ASCII digits"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "out.json"
    if "-o" not in args:
        args = args + ["-o", "-" if "binary" in needle else str(out)]
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and os.listdir(tmp_path) == []


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    for cmd in ("solve", "show", "verify", "level", "frontier", "build", "check", "plot"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, cmd


def test_solve_alpha3_K6_to_stdout():
    r = run("solve", "--divergence", "alpha:3", "--K", "6", "--estimator", "exact", "-o", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    want = [(Fraction((c - 1) * (c - 2), 20) - 1) / 2 for c in range(1, 7)]
    assert [Fraction(s) for s in doc["values_exact"]] == want
    assert doc["values"] == [float(w) for w in want]
    assert 0 <= float(doc["bias_bound"]) < 1e-15  # exact rationals rounded to float64: tiny, certified


def test_solve_show_verify_round_trip(tmp_path):
    path = tmp_path / "kl.json"
    r = run("solve", "-d", "kl", "--K", "8", "-e", "plugin", "-o", str(path))
    assert r.returncode == 0, r.stderr
    r = run("show", str(path))
    assert r.returncode == 0 and "estimator   plugin" in r.stdout and "worst at p =" in r.stdout
    r = run("verify", str(path))
    assert r.returncode == 0, r.stderr
    # a file whose bias bound was lowered (and re-sealed) is caught
    from coefgen.payload import seal

    doc = json.loads(path.read_text())
    doc["bias_bound"] = repr(float(doc["bias_bound"]) * 0.99)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(seal(doc)))
    r = run("verify", str(bad))
    assert r.returncode == 1 and "bias" in r.stderr


def test_show_rejects_foreign_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text('{"hello": 1}')
    r = run("show", str(f))
    assert r.returncode == 2 and "schema" in r.stderr and "Traceback" not in r.stderr


def test_verify_a_manifest_checks_every_file(tmp_path):
    spec = tmp_path / "coefgen.yaml"
    spec.write_text("output: t\nformats: [json, npz, c]\ntables:\n  - {divergence: kl, estimator: plugin, K: [4, 5]}\n")
    r = run("build", "-c", str(spec), "--quiet")
    assert r.returncode == 0, r.stderr
    manifest = tmp_path / "t" / "manifest.json"
    r = run("verify", str(manifest))
    assert r.returncode == 0 and f"ok {manifest}" in r.stdout
    header = tmp_path / "t" / "kl-plugin-K5.h"
    header.write_text(header.read_text().replace("static const", "static  const"))
    (tmp_path / "t" / "kl-plugin-K4.npz").unlink()
    r = run("verify", str(manifest))
    assert r.returncode == 1
    assert "kl-plugin-K5.h: bytes differ" in r.stderr and "kl-plugin-K4.npz: listed in" in r.stderr


# issue 13, items 5 and 12: output destinations (exit 2 with the reason, before any solving)
DEST = [
    ("dir", "it is a directory"),
    ("", "the output path is empty"),
    ("file/under.json", "not a directory"),
    ("x" * 300 + ".json", "255-byte limit"),
]


@pytest.mark.parametrize("dest,needle", DEST, ids=[d[1] for d in DEST])
def test_bad_output_destination_exits_2(tmp_path, dest, needle):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("keep")
    before = sorted(os.listdir(tmp_path))
    r = run("solve", "-d", "euclidean", "--K", "4", "-e", "exact", "-o", dest, cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == before and (tmp_path / "file").read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_target_exits_2(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = run("solve", "-d", "euclidean", "--K", "4", "-e", "exact", "-o", str(ro / "t.json"))
        assert r.returncode == 2 and "permission denied" in r.stderr
    finally:
        ro.chmod(0o700)


def test_a_huge_name_is_elided_in_the_one_line_error():
    r = run("solve", "-d", "x" * 100_000, "--K", "4", "-e", "plugin", "-o", "-")
    assert r.returncode == 2 and len(r.stderr) < 1500 and r.stderr.count("\n") == 1, r.stderr[:200]
    assert "(100000 characters)" in r.stderr


def test_solve_to_dev_null_keeps_the_device():
    import stat

    r = run("solve", "-d", "euclidean", "--K", "4", "-e", "exact", "-o", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_solve_refuses_non_finite_claims(tmp_path, monkeypatch):
    """issue 13, item 6: never 'certified: true' beside a nan bound (one check shared with build)."""
    import math

    from click.testing import CliRunner

    import coefgen.certify as certify_mod
    from coefgen.cli import main

    real = certify_mod.certify

    def broken(values, reward, **kw):
        cert = real(values, reward, **kw)
        return type(cert)(bias=cert.bias, variance=cert.variance,
                          mse=type(cert.mse)(math.nan, math.nan, cert.mse.witness), method=cert.method)

    monkeypatch.setattr(certify_mod, "certify", broken)
    out = tmp_path / "t.json"
    r = CliRunner().invoke(main, ["solve", "-d", "euclidean", "--K", "4", "-e", "exact", "-o", str(out)])
    assert r.exit_code == 1 and "did not prove finite bounds" in r.output and not out.exists(), r.output


def test_solve_game_modes(tmp_path):
    """--max-mse <k>plugin --gamma --monotone reach the solver and name the table."""
    out = tmp_path / "t.json"
    r = run("solve", "-d", "kl", "--K", "8", "-e", "aqp", "--max-mse", "4*plugin", "--gamma", "0.75", "--monotone",
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["table_id"] == "kl-aqp-gamma0.75-max_mse4plugin-monotoneTrue-K8"
    assert d["estimator_params"]["gamma"] == 0.75 and d["estimator_params"]["monotone"] is True
    assert all(a <= b for a, b in zip(d["values"], d["values"][1:]))


# --- issue 20.9 / 20.13: a destination that is an input or another destination; '-'; empty paths ---

def _table_file(tmp_path):
    path = tmp_path / "t.json"
    r = run("solve", "-d", "euclidean", "--K", "4", "-e", "exact", "-o", str(path))
    assert r.returncode == 0, r.stderr
    return path


CLASHES = [
    (["bon", "-r", "{ref}", "--n", "2", "-o", "{ref}"], "is the reference"),
    (["bon", "-r", "{ref}", "--n", "2", "--json", "{ref}"], "is the reference"),
    (["bon", "-r", "{ref}", "--n", "2", "--json", "{dir}/x", "-o", "{dir}/x"], "are the same file"),
    (["bon", "-r", "{ref}", "--n", "2", "--json", "{dir}/x", "-o", "{dir}/./x"], "are the same file"),
    (["bon", "-r", "{ref}", "--n", "2", "-o", "{link}"], "is the reference"),
    (["plot", "{table}", "-o", "{table}"], "is the table"),
    (["frontier", "-d", "kl", "--K", "4", "-o", "{dir}/f", "--json", "{dir}/f"], "are the same file"),
    (["bon", "-r", "{ref}", "--n", "2", "--json", ""], "the output path is empty"),
    (["bon", "-r", "{ref}", "--n", "2", "-o", ""], "the output path is empty"),
    (["frontier", "-d", "kl", "--K", "4", "-o", "{dir}/f.png", "--json", ""], "the output path is empty"),
    (["plot", "{table}", "-o", ""], "the output path is empty"),
    (["bon", "-r", "{ref}", "--n", "2", "-o", "-"], "binary"),
    (["plot", "{table}", "-o", "-"], "binary"),
    (["frontier", "-d", "kl", "--K", "4", "-o", "-"], "binary"),
    (["solve", "-d", "euclidean", "--K", "4", "-e", "exact", "--format", "npz", "-o", "-"], "binary"),
]


@pytest.mark.parametrize("args,needle", CLASHES, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(CLASHES)])
def test_outputs_over_inputs_or_each_other_are_refused_before_work(tmp_path, args, needle):
    table = _table_file(tmp_path)
    ref = tmp_path / "ref.csv"
    ref.write_text("prob,reward\n0.5,1\n0.5,2\n")
    (tmp_path / "link.csv").symlink_to(ref)
    fields = {"ref": str(ref), "table": str(table), "dir": str(tmp_path), "link": str(tmp_path / "link.csv")}
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    names = sorted(os.listdir(tmp_path))
    r = run(*[a.format(**fields) for a in args], cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == names and all(p.read_bytes() == b for p, b in before.items())


def test_dash_is_stdout_for_every_text_output(tmp_path):
    r = run("frontier", "-d", "kl", "--K", "3", "-o", str(tmp_path / "f.png"), "--json", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["K"] == 3 and not (tmp_path / "-").exists()
    r = run("bon", "-r", "uniform:3", "--n", "2", "--json", "-", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["sweep"][0]["n"] == 2 and not (tmp_path / "-").exists()
    r = run("solve", "-d", "euclidean", "--K", "3", "-e", "exact", "-o", "-", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["K"] == 3 and not (tmp_path / "-").exists()
    r = run("bon", "-r", "uniform:3", "--n", "2", "--json", "./-", cwd=tmp_path)  # a file named '-'
    assert r.returncode == 0 and json.loads((tmp_path / "-").read_text())["sweep"][0]["n"] == 2


@pytest.mark.parametrize("exc,needle", [(MemoryError, "ran out of memory"), (RecursionError, "nested too deeply")])
def test_memory_and_recursion_errors_are_one_line_exit_2(monkeypatch, exc, needle):
    """issue 20.12: an input too large for the machine is bad input (exit 2), not an internal error."""
    from click.testing import CliRunner

    import coefgen.cli_bon
    from coefgen.cli import main

    def boom(*a, **k):
        raise exc()

    monkeypatch.setattr(coefgen.cli_bon, "run", boom)
    r = CliRunner().invoke(main, ["bon", "-r", "uniform:3"])
    assert r.exit_code == 2 and needle in r.stderr and "internal error" not in r.stderr, r.output
    assert r.stderr.count("\n") == 1


# --- issue 20.7: named caps on work inside the stated limits (exit 2 at once, nothing computed) ---
WORK_CAPS = [
    (["level", "-d", "kl", "--K", "2048", "--digits", "200"], "MAX_LEVEL_WORK"),
    (["level", "-d", "kl", "--K", "2048", "--digits", "55"], "at most 54 digits"),
    (["frontier", "-d", "kl", "--K", "2048", "-o", "f.png"], "MAX_FRONTIER_K = 128"),
    (["frontier", "-d", "kl", "--K", "129", "-o", "f.png"], "MAX_FRONTIER_K"),
    (["solve", "-d", "poly:" + ",".join(["1/3"] * 2048), "--K", "2048", "-e", "exact", "-o", "t.json"],
     "MAX_EXACT_WORK"),
    (["solve", "-d", "poly:" + ",".join(["1"] * 600), "--K", "600", "-e", "exact", "-o", "t.json"], "MAX_EXACT_WORK"),
]


@pytest.mark.parametrize("args,needle", WORK_CAPS, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(WORK_CAPS)])
def test_work_beyond_a_named_cap_is_refused_at_once(tmp_path, args, needle):
    import time

    t0 = time.monotonic()
    r = run(*args, cwd=tmp_path)
    assert time.monotonic() - t0 < 15
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


def test_work_caps_leave_the_ordinary_range_alone():
    from coefgen.frontier import MAX_FRONTIER_K
    from coefgen.solvers.exact import MAX_EXACT_WORK
    from coefgen.solvers.minimax import check_level_work, default_digits

    for K in (2, 64, 256, 512, 1024, 2048):
        check_level_work(K, default_digits(K))  # the default digits are always allowed
    for K in (2, 256, 1024):
        check_level_work(K, 200)  # the CLI's 200 digits up to K = 1024
    assert 2048 * 3 <= MAX_EXACT_WORK and MAX_FRONTIER_K >= 64  # alpha:3 exact at K = 2048; the README's frontier


EMPTY_PATHS = [
    ["build", "--out", ""], ["build", "-c", ""], ["check", "--out", ""], ["check", "-c", ""],
    ["verify", ""], ["show", ""], ["plot", "", "-o", "x.png"],
]


def test_out_dash_is_not_a_directory_named_dash(tmp_path):
    r = run("build", "--out", "-", cwd=tmp_path)
    assert r.returncode == 2 and "standard output" in r.stderr and os.listdir(tmp_path) == [], r.stderr


@pytest.mark.parametrize("args", EMPTY_PATHS, ids=[" ".join(a) for a in EMPTY_PATHS])
def test_an_empty_path_is_bad_input_before_any_work(tmp_path, args):
    """issue 20.13: `build --out ''` used to build the default set into ./tables."""
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2 and "the path is empty" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert os.listdir(tmp_path) == []


def test_a_remez_failure_is_a_failed_computation_not_an_internal_error():
    """A 2048-coefficient poly at K = 512: the float64 Remez loses alternation (exit 1, one line)."""
    r = run("level", "-d", "poly:" + ",".join(["1/3"] * 2048), "--K", "512")
    assert r.returncode == 1 and "could not be computed" in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
