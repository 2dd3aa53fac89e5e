"""coefgen build / check on a small table set: incremental, parallel, crash-safe, exact bytes."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from coefgen import __version__
from coefgen.build import MANIFEST, build, check, read_manifest
from coefgen.cli import main
from coefgen.payload import canonical_json, seal
from coefgen.runtime import load
from coefgen.spec import load_spec

from conftest import ROOT

TESTS = os.path.dirname(os.path.abspath(__file__))

SPEC = """
output: out
formats: [json, npz, c]
tables:
  - divergence: [euclidean, alpha:3]
    estimator: exact
    K: [3..5, 8]
  - divergence: kl
    estimator: digamma
    K: [4, 8]
  - divergence: kl
    estimator: plugin
    K: 6
"""
N_TABLES = 11


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "coefgen.yaml"
    path.write_text(textwrap.dedent(SPEC).lstrip())
    return str(path)


def snapshot(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, directory)] = fh.read()
    return out


def counting(monkeypatch):
    import coefgen.compiler

    calls = []
    real = coefgen.compiler.compile_table

    def wrapped(divergence, K, estimator, params=None):
        calls.append((divergence, K, estimator))
        return real(divergence, K, estimator, params)

    monkeypatch.setattr(coefgen.compiler, "compile_table", wrapped)
    return calls


def test_build_twice_identical_and_second_is_a_noop(spec_path, tmp_path, monkeypatch):
    spec = load_spec(spec_path)
    res = build(spec, jobs=1, quiet=True)
    assert not res.failures and len(res.solved) == N_TABLES
    first = snapshot(tmp_path / "out")
    assert len(first) == 3 * N_TABLES + 2  # + manifest.json + coefgen_tables.h
    mtimes = {f: os.stat(tmp_path / "out" / f).st_mtime_ns for f in first}
    calls = counting(monkeypatch)
    res2 = build(spec, jobs=1, quiet=True)
    assert calls == [] and res2.solved == [] and len(res2.cached) == N_TABLES
    assert snapshot(tmp_path / "out") == first
    assert {f: os.stat(tmp_path / "out" / f).st_mtime_ns for f in first} == mtimes  # nothing rewritten
    # manifest: every file with the sha256 of its bytes, its table, inputs key and entry
    manifest = json.loads(first[MANIFEST])
    assert manifest["generator_version"] == __version__
    assert first[MANIFEST].decode() == canonical_json(manifest)
    paths = {rec["path"] for rec in manifest["files"]}
    assert paths == set(first) - {MANIFEST}
    for rec in manifest["files"]:
        assert rec["sha256"] == hashlib.sha256(first[rec["path"]]).hexdigest()
    rec = next(r for r in manifest["files"] if r["path"] == "kl-digamma-K8.npz")
    assert rec["table_id"] == "kl-digamma-K8" and rec["entry"]["index"] == 1 and rec["inputs"]["K"] == 8


def test_parallel_build_gives_the_same_bytes(spec_path, tmp_path):
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    res = build(spec, str(tmp_path / "par"), jobs=2, quiet=True)
    assert not res.failures
    assert snapshot(tmp_path / "par") == snapshot(tmp_path / "out")


def test_damaged_or_changed_tables_are_rebuilt_alone(spec_path, tmp_path, monkeypatch):
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    good = snapshot(tmp_path / "out")
    (tmp_path / "out" / "kl-digamma-K4.npz").write_bytes(b"PK garbage")
    (tmp_path / "out" / "alpha3-exact-K5.json").unlink()
    calls = counting(monkeypatch)
    # issue 20.8: a damaged file is not provably coefgen's: refused (exit 2) before any work, kept
    from coefgen.errors import InputError

    with pytest.raises(InputError, match="kl-digamma-K4.npz exists and was not written by coefgen"):
        build(spec, jobs=1, quiet=True)
    assert calls == [] and (tmp_path / "out" / "kl-digamma-K4.npz").read_bytes() == b"PK garbage"
    (tmp_path / "out" / "kl-digamma-K4.npz").unlink()  # the user removes it
    res = build(spec, jobs=1, quiet=True)
    assert sorted(calls) == [("alpha:3", 5, "exact"), ("kl", 4, "digamma")]
    assert len(res.solved) == 2 and snapshot(tmp_path / "out") == good
    # a different coefgen version in the manifest: everything is re-solved
    manifest = json.loads(good[MANIFEST])
    for rec in manifest["files"]:
        rec["generator_version"] = "0.0.1"
    (tmp_path / "out" / MANIFEST).write_text(canonical_json(manifest))
    calls.clear()
    build(spec, jobs=1, quiet=True)
    assert len(calls) == N_TABLES and snapshot(tmp_path / "out") == good


def test_extra_files_reported_and_pruned(spec_path, tmp_path):
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    (tmp_path / "out" / "notes.txt").write_text("mine")
    res = build(spec, jobs=1, quiet=True)
    assert res.extras == ["notes.txt"]
    res = build(spec, jobs=1, quiet=True, prune=True)
    # issue 13, item 4: --prune deletes only what coefgen provably wrote
    assert res.pruned == [] and res.extras == ["notes.txt"] and (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_check_identical_then_hand_edit_is_named(spec_path, tmp_path):
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    out = str(tmp_path / "out")
    assert check(spec, jobs=2, quiet=True) == []
    # edit one value, re-seal the sha256 AND fix the manifest: check must still catch it
    path = os.path.join(out, "kl-digamma-K8.json")
    payload = json.load(open(path))
    payload["values"][3] += 1e-9
    data = canonical_json(seal(payload)).encode()
    open(path, "wb").write(data)
    manifest = json.load(open(os.path.join(out, MANIFEST)))
    for rec in manifest["files"]:
        if rec["path"] == "kl-digamma-K8.json":
            rec["sha256"] = hashlib.sha256(data).hexdigest()
    open(os.path.join(out, MANIFEST), "w").write(canonical_json(manifest))
    os.unlink(os.path.join(out, "euclidean-exact-K3.h"))
    open(os.path.join(out, "stray.json"), "w").write("{}")
    lines = check(spec, jobs=1, quiet=True)
    names = {line.split()[-1] for line in lines}
    assert [line for line in lines if "kl-digamma-K8.json" in line] == [f"changed {path}"]
    assert f"missing {os.path.join(out, 'euclidean-exact-K3.h')}" in lines
    assert f"extra {os.path.join(out, 'stray.json')}" in lines
    assert f"changed {os.path.join(out, MANIFEST)}" in lines
    assert len(lines) == 4, lines
    assert "kl-digamma-K4.json" not in " ".join(names)


def test_check_reports_stale_version(spec_path, tmp_path):
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    path = tmp_path / "out" / "kl-plugin-K6.json"
    payload = json.loads(path.read_text())
    payload["generator_version"] = "0.0.9"
    path.write_text(canonical_json(seal(payload)))
    lines = check(spec, jobs=1, quiet=True)
    assert lines == [f"stale version {path} (generated by coefgen 0.0.9, installed {__version__})"]


def test_cli_build_check_exit_codes(spec_path, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["build", "-c", spec_path, "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "kl-digamma-K8" in res.output and "bias/E*_K" in res.output  # summary table
    assert "[11/11]" in res.output  # plain progress lines (not a terminal)
    res = runner.invoke(main, ["build", "-c", spec_path, "-j", "1", "-q"])
    assert res.exit_code == 0 and res.output == ""
    res = runner.invoke(main, ["check", "-c", spec_path, "-j", "1", "-q"])
    assert res.exit_code == 0, res.output
    (tmp_path / "out" / "alpha3-exact-K4.npz").unlink()
    res = runner.invoke(main, ["check", "-c", spec_path, "-j", "1", "-q"])
    assert res.exit_code == 1
    assert f"missing {tmp_path / 'out' / 'alpha3-exact-K4.npz'}" in res.output


def test_verify_failure_exits_1_and_is_not_written(spec_path, tmp_path, monkeypatch):
    import coefgen.verify

    real = coefgen.verify.verify_payload
    monkeypatch.setattr(coefgen.verify, "verify_payload",
                        lambda p, s: [f"{s}: bias_bound is a lie"] if p["K"] == 8 and p["estimator"] == "digamma"
                        else real(p, s))
    res = CliRunner().invoke(main, ["build", "-c", spec_path, "-j", "1", "-q"])
    assert res.exit_code == 1
    assert "kl-digamma-K8: kl-digamma-K8.json: bias_bound is a lie" in res.output
    assert not (tmp_path / "out" / "kl-digamma-K8.json").exists()
    assert (tmp_path / "out" / "kl-digamma-K4.json").exists()
    assert "kl-digamma-K8.json" not in {r for r in read_manifest(str(tmp_path / "out"))}


# --------------------------------------------------------------------------- interruption

DRIVER = """
import sys, time
sys.path.insert(0, {tests!r})
import coefgen.compiler as compiler
real = compiler.compile_table
def slow(*a, **k):
    time.sleep({delay})
    return real(*a, **k)
compiler.compile_table = slow
from coefgen.cli import main
main(sys.argv[1:])
"""


def start_build(tmp_path, spec_path, delay=0.3):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=TESTS, delay=delay))
    return subprocess.Popen([sys.executable, str(driver), "build", "-c", spec_path, "-j", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_tables(out, n, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(read_manifest(str(out))) >= 3 * n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the build wrote no table in time")


def read_manifest_from(data):
    return {rec["path"]: rec for rec in json.loads(data)["files"]}


def assert_manifest_intact(out):
    manifest = read_manifest(str(out))
    assert manifest
    for path, rec in manifest.items():
        data = (out / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec["sha256"], path
        if path.endswith((".json", ".npz")):
            assert load(out / path).payload["table_id"] == rec["table_id"]
    return manifest


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_build_keeps_finished_tables(spec_path, tmp_path, sig):
    out = tmp_path / "out"
    proc = start_build(tmp_path, spec_path)
    wait_for_tables(out, 2, proc)
    before = snapshot(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, err
        assert b"interrupted" in err
        assert not [f for f in os.listdir(out) if f.endswith(".tmp")]  # temp files cleaned
    manifest = assert_manifest_intact(out)
    assert 6 <= len(manifest) < 3 * N_TABLES
    for path in before:  # nothing written before the kill was damaged or lost
        if path != MANIFEST and not path.endswith(".tmp"):
            assert (out / path).read_bytes() == before[path], path
    assert set(read_manifest_from(before[MANIFEST])) <= set(manifest)
    if sig != signal.SIGKILL:
        return
    # finishing the build solves only what is missing and ends byte-identical to a clean build
    res = build(load_spec(spec_path), jobs=1, quiet=True)
    assert not res.failures and len(res.cached) >= 2
    clean = build(load_spec(spec_path), str(tmp_path / "clean"), jobs=1, quiet=True)
    assert not clean.failures
    assert snapshot(out) == snapshot(tmp_path / "clean")


# --------------------------------------------------------------------------- aggregate header

PROGRAM = r"""
#include <stdio.h>
#include "coefgen_tables.h"
#include "kl-digamma-K8.h"   /* including a per-table header too is harmless */
int main(void) {
    const double *t = coefgen_table("kl", "digamma", 8);
    const double *a = coefgen_table("alpha:3", "exact", 5);
    int i;
    if (t == NULL || a == NULL) return 2;
    if (coefgen_table("kl", "digamma", 5) != NULL || coefgen_table("kl", "aqp", 8) != NULL) return 3;
    if (t != coefgen_kl_digamma_k8) return 4;
    for (i = 0; i < COEFGEN_KL_DIGAMMA_K8_K; i++) printf("%a\n", t[i]);
    for (i = 0; i < COEFGEN_ALPHA3_EXACT_K5_K; i++) printf("%a\n", a[i]);
    return 0;
}
"""


@pytest.mark.parametrize("compiler", [["cc", "-std=c99"], ["c++", "-x", "c++"]])
def test_aggregate_header_compiles_and_looks_up(spec_path, tmp_path, compiler):
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"no {compiler[0]}")
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    out = tmp_path / "out"
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / f"prog_{compiler[0].replace('+', 'p')}"
    subprocess.run(compiler + ["-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{out}", str(src), "-o", str(exe)],
                   check=True, capture_output=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    expected = load(out / "kl-digamma-K8.json").payload["values"] + load(out / "alpha3-exact-K5.json").payload["values"]
    assert [float.fromhex(x) for x in lines] == expected


def test_aggregate_header_is_deterministic_and_in_the_manifest(spec_path, tmp_path):
    spec = load_spec(spec_path)
    build(spec, jobs=2, quiet=True)
    build(spec, str(tmp_path / "again"), jobs=1, quiet=True, force=True)
    a = (tmp_path / "out" / "coefgen_tables.h").read_bytes()
    assert a == (tmp_path / "again" / "coefgen_tables.h").read_bytes()
    assert a.count(b"case ") == N_TABLES
    assert read_manifest(str(tmp_path / "out"))["coefgen_tables.h"]["sha256"] == hashlib.sha256(a).hexdigest()


# --- issue 13: prune, output directory, lock, temporary files, check -------------------

SMALL = "formats: [json, npz, c]\ntables:\n  - {divergence: euclidean, estimator: exact, K: [3, 4]}\n"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "coefgen.cli", *args], capture_output=True, text=True, cwd=cwd)


def _fake_repo(root):
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "src").mkdir()
    (root / "src" / "train.py").write_text("print('hi')\n")
    (root / "README.md").write_text("mine\n")
    return snapshot(root)


@pytest.mark.parametrize("layout", ["out-dot", "output-dot", "output-dotdot", "output-abs"])
def test_prune_never_touches_a_repository(tmp_path, layout):
    """A repo with .git, sources and the spec survives `build --prune` aimed at it (exit 2)."""
    repo = tmp_path / "repo"
    before = _fake_repo(repo)
    args = ["build", "--prune", "--jobs", "1", "--quiet"]
    if layout == "out-dot":
        (repo / "coefgen.yaml").write_text("output: tables\n" + SMALL)
        args += ["-c", "coefgen.yaml", "--out", "."]
    elif layout == "output-dot":
        (repo / "coefgen.yaml").write_text("output: .\n" + SMALL)
        args += ["-c", "coefgen.yaml"]
    elif layout == "output-dotdot":
        (repo / "conf").mkdir()
        (repo / "conf" / "coefgen.yaml").write_text("output: ..\n" + SMALL)
        args += ["-c", "conf/coefgen.yaml"]
    else:
        (repo / "coefgen.yaml").write_text(f"output: {repo}\n" + SMALL)
        args += ["-c", "coefgen.yaml"]
    before = snapshot(repo)
    r = _cli(*args, cwd=repo)
    assert r.returncode == 2 and "dedicated subdirectory" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert snapshot(repo) == before


def test_prune_deletes_only_provable_coefgen_files(spec_path, tmp_path):
    spec = load_spec(spec_path)
    build(spec, jobs=1, quiet=True)
    out = tmp_path / "out"
    table = (out / "kl-plugin-K6.json").read_bytes()
    # not ours, or not provably: all must survive --prune
    keep = {
        "notes.txt": b"mine",
        "kl-plugin-K9.json": b'{"looks": "like a table name"}',   # scheme name, not a table
        ".hidden.json": table,                                     # dot-entry
        "renamed.json": table,                                     # a table under a foreign name
        "foo.h": b"/* generated by coefgen 0.1.0; do not edit */\n", # header under a foreign name
    }
    for name, data in keep.items():
        (out / name).write_bytes(data)
    (out / "sub").mkdir()
    (out / "sub" / "kl-plugin-K6.json").write_bytes(table)       # in a subdirectory
    (out / "link.json").symlink_to(out / "kl-plugin-K6.json")      # a symlink
    # a table that the spec no longer produces: provably ours (manifest or content)
    smaller = load_spec(spec_path)
    smaller.tables = [r for r in smaller.tables if r.table_id != "kl-plugin-K6"]
    res = build(smaller, jobs=1, quiet=True, prune=True)
    assert sorted(res.pruned) == ["kl-plugin-K6.h", "kl-plugin-K6.json", "kl-plugin-K6.npz"]
    for name, data in keep.items():
        assert (out / name).read_bytes() == data, name
    assert (out / "sub" / "kl-plugin-K6.json").exists() and os.path.islink(out / "link.json")
    # not listed in the manifest any more: recognised by name + content
    build(spec, jobs=1, quiet=True)
    build(smaller, jobs=1, quiet=True)  # drops the manifest records, keeps the files
    assert "kl-plugin-K6.json" not in read_manifest(str(out))
    res = build(smaller, jobs=1, quiet=True, prune=True)
    assert sorted(res.pruned) == ["kl-plugin-K6.h", "kl-plugin-K6.json", "kl-plugin-K6.npz"]


def test_output_that_is_a_file_exits_2(spec_path, tmp_path):
    (tmp_path / "out").write_text("a file")
    r = _cli("build", "-c", spec_path, "--quiet")
    assert r.returncode == 2 and "not a directory" in r.stderr and (tmp_path / "out").read_text() == "a file"


def _hold_lock(directory):
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_build_on_a_locked_directory_exits_2_naming_the_holder(spec_path, tmp_path):
    from coefgen.errors import InputError

    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        t0 = time.monotonic()
        with pytest.raises(InputError, match=f"locked by another coefgen build \\(pid {holder.pid}\\)"):
            build(load_spec(spec_path), jobs=1, quiet=True, lock_wait=0.3)
        assert time.monotonic() - t0 < 5
        assert os.listdir(out) == []
    finally:
        holder.kill()
        holder.wait()
    res = build(load_spec(spec_path), jobs=1, quiet=True, lock_wait=5)  # released when the holder dies
    assert not res.failures


def test_startup_removes_only_temporaries_of_dead_processes(spec_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / f".coefgen-{dead.pid}-abc.tmp").write_bytes(b"stale")
        (out / f".coefgen-{alive.pid}-abc.tmp").write_bytes(b"in flight")
        build(load_spec(spec_path), jobs=1, quiet=True)
        assert not (out / f".coefgen-{dead.pid}-abc.tmp").exists()
        assert (out / f".coefgen-{alive.pid}-abc.tmp").read_bytes() == b"in flight"
    finally:
        alive.kill()
        alive.wait()


def test_check_cleans_stale_temp_dirs_and_an_interrupt_claims_nothing(spec_path, tmp_path, monkeypatch):
    import coefgen.build as B

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = tmp_path / "tmp"
    (base / f"coefgen-check-{dead.pid}-x1").mkdir(parents=True)
    (base / f"coefgen-check-{dead.pid}-x1" / "t.json").write_text("left by kill -9")
    (base / f"coefgen-check-{os.getpid()}-x2").mkdir()
    removed = B.clean_stale_check_dirs(str(base))
    assert [os.path.basename(p) for p in removed] == [f"coefgen-check-{dead.pid}-x1"]
    assert os.listdir(base) == [f"coefgen-check-{os.getpid()}-x2"]

    def interrupted(*a, **k):
        raise B.Interrupted("check interrupted: 3 table(s) finished and kept")

    monkeypatch.setattr(B, "build", interrupted)
    with pytest.raises(B.Interrupted) as e:
        B.check(load_spec(spec_path), str(tmp_path / "out"), jobs=1, quiet=True)
    assert "kept" not in str(e.value) and "nothing" in str(e.value)


def test_check_advice_after_a_resealed_hand_edit_is_build_force(spec_path, tmp_path):
    r = _cli("build", "-c", spec_path, "--quiet", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    path = out / "kl-digamma-K8.json"
    payload = json.loads(path.read_text())
    payload["values"][3] += 1e-9
    data = canonical_json(seal(payload)).encode()
    path.write_bytes(data)
    manifest = json.loads((out / MANIFEST).read_text())
    for rec in manifest["files"]:
        if rec["path"] == "kl-digamma-K8.json":
            rec["sha256"] = hashlib.sha256(data).hexdigest()
    (out / MANIFEST).write_text(canonical_json(manifest))
    r = _cli("check", "-c", spec_path, "--quiet", "--jobs", "1")
    assert r.returncode == 1 and "coefgen build --force" in r.stderr
    # a plain build detects it too (values_exact no longer rounds to values): re-solved
    r = _cli("build", "-c", spec_path, "--jobs", "1")
    assert r.returncode == 0 and "1 solved" in r.stderr, r.stderr
    r = _cli("check", "-c", spec_path, "--quiet", "--jobs", "1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_two_concurrent_builds_on_one_directory_both_succeed(tmp_path):
    """issue 13, item 10: the second waits for the lock (then finds everything up to date);
    neither deletes the other's in-flight temporary files."""
    spec = tmp_path / "coefgen.yaml"
    spec.write_text("output: out\nformats: [json, npz]\ntables:\n  - {divergence: kl, estimator: plugin, K: 3..12}\n")
    cmd = [sys.executable, "-m", "coefgen.cli", "build", "-c", str(spec), "--quiet", "--jobs", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    r = _cli("check", "-c", str(spec), "--quiet", "--jobs", "1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_aggregate_header_usage_example_names_a_table_of_the_set(spec_path, tmp_path):
    """The usage line in the header's comment is a lookup that succeeds against the set it ships with."""
    import re

    if shutil.which("cc") is None:
        pytest.skip("no cc")
    build(load_spec(spec_path), jobs=1, quiet=True)
    out = tmp_path / "out"
    header = (out / "coefgen_tables.h").read_text()
    call = re.search(r"const double \*t = (coefgen_table\([^)]*\));", header).group(1)
    src = tmp_path / "ex.c"
    src.write_text('#include "coefgen_tables.h"\nint main(void) { return ' + call + ' == NULL; }\n')
    exe = tmp_path / "ex"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", f"-I{out}", str(src), "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)]).returncode == 0


# --- issue 20.8: build replaces only what coefgen provably wrote -----------------------------------

SMALL_SET = "output: out\nformats: [json, npz, c]\ntables:\n  - {divergence: euclidean, estimator: exact, K: [3, 4]}\n"

FOREIGN = [
    ("manifest.json", b'{"name": "my-package", "version": "1.0"}\n'),
    ("manifest.json", b"not json at all"),
    ("coefgen_tables.h", b"/* my own header */\n#define X 1\n"),
    ("euclidean-exact-K3.json", b'{"mine": true}\n'),
    ("euclidean-exact-K4.npz", b"PK\x03\x04 my archive"),
    ("euclidean-exact-K3.h", b"/* generated by coefgen 0.2.0; do not edit */\nint x;\n"),
]


@pytest.mark.parametrize("name,data", FOREIGN, ids=[f"{n}-{i}" for i, (n, _) in enumerate(FOREIGN)])
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_build_never_replaces_a_foreign_file(tmp_path, name, data, force):
    (tmp_path / "coefgen.yaml").write_text(SMALL_SET)
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(data)
    r = _cli("build", "-c", str(tmp_path / "coefgen.yaml"), "--jobs", "1", "--quiet", *(["--force"] if force else []))
    assert r.returncode == 2, r.stderr
    assert name in r.stderr and "not written by coefgen" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(out)) == [name] and (out / name).read_bytes() == data  # refused before any work


def test_build_refuses_a_symlink_under_a_table_name(tmp_path):
    (tmp_path / "coefgen.yaml").write_text(SMALL_SET)
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious.json"
    target.write_text("precious")
    (out / "euclidean-exact-K3.json").symlink_to(target)
    r = _cli("build", "-c", str(tmp_path / "coefgen.yaml"), "--jobs", "1", "--quiet")
    assert r.returncode == 2 and "euclidean-exact-K3.json" in r.stderr, r.stderr
    assert target.read_text() == "precious"


def test_build_replaces_its_own_files_of_any_version(tmp_path):
    """Its own files stay replaceable: listed in the manifest, or sealed tables/headers of another
    version (re-solved), and a coefgen manifest."""
    (tmp_path / "coefgen.yaml").write_text(SMALL_SET)
    out = tmp_path / "out"
    r = _cli("build", "-c", str(tmp_path / "coefgen.yaml"), "--jobs", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    (out / "manifest.json").unlink()  # not listed any more: recognised by content
    r = _cli("build", "-c", str(tmp_path / "coefgen.yaml"), "--jobs", "1", "--quiet", "--force")
    assert r.returncode == 0, r.stderr


# --- issue 20.13: a build that cannot write stops (exit 2) instead of solving everything ------------

def test_read_only_output_directory_is_refused_before_solving(spec_path, tmp_path, monkeypatch):
    import errno

    import coefgen.build

    calls = counting(monkeypatch)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(coefgen.build.tempfile, "mkstemp", read_only)
    from coefgen.errors import InputError

    with pytest.raises(InputError, match="read-only file system.*nothing was solved"):
        build(load_spec(spec_path), jobs=1, quiet=True, force=True)
    assert calls == []


def test_full_disk_stops_the_build_and_says_what_was_written(spec_path, tmp_path, monkeypatch):
    import coefgen.build
    from coefgen.errors import InputError

    calls = counting(monkeypatch)
    real = coefgen.build.write_atomic
    writes = []

    def filling(path, data):
        writes.append(path)
        if len(writes) > 4:  # the first table's 3 files and the manifest fit; then the disk is full
            raise InputError(f"cannot write {path}: no space left on the device")
        real(path, data)

    monkeypatch.setattr(coefgen.build, "write_atomic", filling)
    with pytest.raises(InputError, match=r"no space left on the device; build stopped: 1 table\(s\) written and kept, "
                                         rf"{N_TABLES - 1} not written"):
        build(load_spec(spec_path), jobs=1, quiet=True)
    assert len(calls) == 2  # stopped at the first table it could not write, not after solving all
    assert len(read_manifest(str(tmp_path / "out"))) == 3  # the written table stays listed


# --- issue 20.11: SIGTERM / SIGINT during build --jobs 2: always exit 130, no traceback, no workers left ---

def _start_pool_build(tmp_path, spec_path, delay=0.3, jobs=2):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=TESTS, delay=delay))
    proc = subprocess.Popen([sys.executable, str(driver), "build", "-c", spec_path, "-j", str(jobs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, str(driver)


def _processes_running(marker: str) -> list:
    """pids whose command line names ``marker`` (the test's own driver file: unique per test)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd and state != b"Z":
            found.append(int(pid))
    return found


def _interrupt_once(tmp_path, spec_path, sig, wait_tables=None, sleep=None):
    out = tmp_path / "out"
    proc, driver = _start_pool_build(tmp_path, spec_path)
    if wait_tables is not None:
        wait_for_tables(out, wait_tables, proc)
    if sleep is not None:
        time.sleep(sleep)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the interrupted build did not exit within 30 s")
    err = err.decode(errors="replace")
    deadline = time.time() + 10
    while _processes_running(driver) and time.time() < deadline:
        time.sleep(0.05)
    assert _processes_running(driver) == [], "worker processes outlived the build"
    assert "Traceback" not in err, err
    return proc.returncode, err, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_pool_build_exits_130_and_leaves_no_worker(spec_path, tmp_path, sig):
    rc, err, out = _interrupt_once(tmp_path, spec_path, sig, wait_tables=2)
    assert rc == 130 and "interrupted" in err, err
    assert_manifest_intact(out)
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


@pytest.mark.slow
def test_sigterm_loop_during_pool_builds(spec_path, tmp_path):
    """The sweep's 1-in-56 hang: 60 builds --jobs 2 terminated at random moments (seeded);
    every one exits (130, or 0 if it had finished), without a traceback or a surviving worker,
    and keeps an intact manifest. Slow (~2-3 min): `make test-slow`."""
    import random

    rng = random.Random(20)
    for i in range(60):
        d = tmp_path / f"run{i}"
        d.mkdir()
        spec = d / "coefgen.yaml"
        spec.write_text(open(spec_path).read())
        rc, err, out = _interrupt_once(d, str(spec), signal.SIGTERM, sleep=rng.uniform(0.0, 2.5))
        if rc == -signal.SIGTERM:  # the default action: before the build took its directory lock, or
            # after it finished (its handler restored, at interpreter exit): then the set is complete
            if err == "":
                assert not (out / MANIFEST).exists(), (i, err)
            else:
                assert "next, in a trainer:" in err, (i, err)
                assert_manifest_intact(out)
            continue
        assert rc in (130, 0), (i, rc, err)
        assert rc == 0 or "interrupted" in err, (i, err)
        if out.exists() and read_manifest(str(out)):
            assert_manifest_intact(out)


def test_manifest_bytes_equal_encoding_the_whole_document():
    """The cached per-record assembly gives exactly canonical_json of the manifest document, also
    after a record is replaced or added (records are replaced, never mutated, during a build)."""
    from coefgen import __version__
    from coefgen.build import manifest_bytes, read_manifest
    from coefgen.payload import MANIFEST_SCHEMA, canonical_json

    def whole(recs):
        doc = {"schema": MANIFEST_SCHEMA, "generator_version": __version__, "files": [recs[p] for p in sorted(recs)]}
        return canonical_json(doc).encode("utf-8")

    recs = read_manifest(os.path.join(ROOT, "tables"))
    assert len(recs) > 1000
    assert manifest_bytes(recs) == whole(recs) == open(os.path.join(ROOT, "tables", "manifest.json"), "rb").read()
    first = sorted(recs)[0]
    recs[first] = {**recs[first], "sha256": "0" * 64, "note": "ünïcode\nline"}
    recs["zz-new.json"] = {"path": "zz-new.json", "inputs": {"K": 3, "x": [1.5, None, True]}}
    assert manifest_bytes(recs) == whole(recs)
    assert manifest_bytes({}) == whole({})
