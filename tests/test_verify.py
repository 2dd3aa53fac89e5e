"""verify on a table-set manifest (issue 13, item 8): listed paths stay inside the set's
directory, regular files only, size-capped; a malformed manifest is one line, exit 2."""

import json
import os
import subprocess
import sys

import pytest

from coefgen.payload import canonical_json

SPEC = "output: t\nformats: [json, npz]\ntables:\n  - {divergence: euclidean, estimator: exact, K: [3, 4]}\n"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "coefgen.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    (root / "coefgen.yaml").write_text(SPEC)
    r = run("build", "-c", str(root / "coefgen.yaml"), "--quiet", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    return root / "t"


def _with_record(built, tmp_path, **rec):
    """A copy of the set whose manifest gets one more (hostile) record."""
    import shutil

    d = tmp_path / "t"
    shutil.copytree(built, d)
    doc = json.loads((d / "manifest.json").read_text())
    base = {"format": "json", "sha256": "0" * 64, "table_id": "x"}
    doc["files"].append(dict(base, **rec))
    (d / "manifest.json").write_text(canonical_json(doc))
    return d


def test_intact_manifest_verifies(built):
    r = run("verify", str(built / "manifest.json"))
    assert r.returncode == 0, r.stderr


ESCAPES = [
    ("../../etc/passwd", "leaves the set's directory"),
    ("/etc/passwd", "leaves the set's directory"),
    ("/dev/zero", "leaves the set's directory"),
    ("sub/../../x.json", "leaves the set's directory"),
    ("./euclidean-exact-K3.json", "leaves the set's directory"),
]


@pytest.mark.parametrize("path,needle", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_paths_leaving_the_directory_are_refused_exit_2(built, tmp_path, path, needle):
    d = _with_record(built, tmp_path, path=path)
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_symlinks_fifos_and_outside_tables_are_not_ok(built, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((built / "euclidean-exact-K3.json").read_bytes())
    d = _with_record(built, tmp_path, path="link.json")
    (d / "link.json").symlink_to(outside)
    doc = json.loads((d / "manifest.json").read_text())
    doc["files"].append({"format": "json", "path": "pipe.json", "sha256": "0" * 64, "table_id": "y"})
    (d / "manifest.json").write_text(canonical_json(doc))
    os.mkfifo(d / "pipe.json")
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 1
    assert "link.json: listed in" in r.stderr and ("symbolic link" in r.stderr or "outside" in r.stderr)
    assert "pipe.json: listed in" in r.stderr and "not a regular file" in r.stderr


MALFORMED = [
    {"files": 3},
    {"files": [1]},
    {"files": [{"format": "json", "sha256": "0"}]},
    {"files": [{"path": "a.json", "format": "exe", "sha256": "0"}]},
    {"files": [{"path": "a.json", "format": "json", "sha256": "0"}, {"path": "a.json", "format": "json", "sha256": "0"}]},
    {"files": [{"path": "a.json", "format": "json", "sha256": "0", "table_id": ["x"]}]},
    {},
]


@pytest.mark.parametrize("doc", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_manifest_is_one_line_exit_2(tmp_path, doc):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(dict(doc, schema="coefgen.manifest/1")))
    r = run("verify", str(path))
    assert r.returncode == 2 and "malformed manifest" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_verify_a_device_is_a_failure_not_a_hang():
    r = run("verify", "/dev/zero")
    assert r.returncode == 1 and "not a regular file" in r.stderr


# --- issue 20.4: every decimal read from a file has the file-number limits (checked before converting) ---

HOSTILE_NUMBERS = [
    ("values_exact", 0, "1e-99999999", "exponent outside"),
    ("values_exact", 1, "9" * 5000 + "/7", "more than 4300 digits"),
    ("bias_bound", None, "1e99999999", "exponent outside"),
    ("bias_lower", None, "0." + "0" * 300 + "1", "longer than 100 characters"),
    ("minimax_level", None, "1E-4000000", "exponent outside"),
    ("minimax_level_bracket", 1, "1e+99999999", "exponent outside"),
    ("witness", "bias", "5e-99999999", "exponent outside"),
    ("mse_bound", None, "٠.٥", "not an exact decimal"),
    ("variance_bound", None, "1_0", "not an exact decimal"),
]


@pytest.mark.parametrize("field,index,text,needle", HOSTILE_NUMBERS, ids=[f"{h[0]}-{h[3][:12]}" for h in HOSTILE_NUMBERS])
def test_hostile_decimals_in_a_resealed_table_fail_fast(built, tmp_path, field, index, text, needle):
    import time

    from coefgen.payload import seal

    payload = json.loads((built / "euclidean-exact-K3.json").read_text())
    if index is None:
        payload[field] = text
    else:
        payload[field][index] = text
    path = tmp_path / "euclidean-exact-K3.json"
    path.write_text(canonical_json(seal(payload)))
    t0 = time.monotonic()
    r = run("verify", str(path))
    assert time.monotonic() - t0 < 20
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_warm_build_over_a_hostile_resealed_table_re_solves_it_fast(built, tmp_path):
    """A warm build meets a re-sealed table (manifest fixed too) with 1e-99999999 in values_exact:
    it must not hang (holding the directory lock), and it re-solves the table."""
    import shutil
    import time

    from coefgen.payload import seal

    root = tmp_path / "s"
    shutil.copytree(built.parent, root)
    d = root / "t"
    name = "euclidean-exact-K3.json"
    payload = json.loads((d / name).read_text())
    payload["values_exact"][0] = "1e-99999999"
    _replace_resealed(d, name, canonical_json(seal(payload)).encode())
    t0 = time.monotonic()
    r = run("build", "-c", str(root / "coefgen.yaml"), "--jobs", "1")
    assert time.monotonic() - t0 < 30
    assert r.returncode == 0, r.stderr
    assert "1 solved" in r.stderr
    assert json.loads((d / name).read_text())["values_exact"][0] != "1e-99999999"


# --- issue 20.10: every format of a set is checked against its table (verify and warm build) ---

SPEC3 = "output: t\nformats: [json, npz, c]\ntables:\n  - {divergence: euclidean, estimator: exact, K: [3, 4]}\n"
SPEC_NPZ = "output: t\nformats: [npz]\ntables:\n  - {divergence: euclidean, estimator: exact, K: [3, 4]}\n"


def _build_set(root, spec):
    root.mkdir(parents=True, exist_ok=True)
    (root / "coefgen.yaml").write_text(spec)
    r = run("build", "-c", str(root / "coefgen.yaml"), "--quiet", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    return root / "t"


@pytest.fixture(scope="module")
def built3(tmp_path_factory):
    return _build_set(tmp_path_factory.mktemp("set3"), SPEC3)


def _replace_resealed(d, name, data: bytes):
    """Put ``data`` at d/name and fix its sha256 in the manifest (a careful hand edit)."""
    import hashlib

    (d / name).write_bytes(data)
    doc = json.loads((d / "manifest.json").read_text())
    for rec in doc["files"]:
        if rec["path"] == name:
            rec["sha256"] = hashlib.sha256(data).hexdigest()
    (d / "manifest.json").write_text(canonical_json(doc))


def _copy_set(built, tmp_path):
    import shutil

    shutil.copytree(built.parent, tmp_path / "s")
    return tmp_path / "s" / "t"


def _edited_header(d, name="euclidean-exact-K3.h"):
    text = (d / name).read_text()
    lines = text.splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith("  ") and line.rstrip().endswith(","))
    lines[i] = "  0.5,\n"
    return "".join(lines).encode()


def test_a_resealed_edited_c_header_fails_verify_and_is_rebuilt(built3, tmp_path):
    d = _copy_set(built3, tmp_path)
    _replace_resealed(d, "euclidean-exact-K3.h", _edited_header(d))
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 1 and "euclidean-exact-K3.h: is not the C header of" in r.stderr, r.stderr
    r = run("build", "-c", str(d.parent / "coefgen.yaml"), "--jobs", "1")
    assert r.returncode == 0 and "1 solved" in r.stderr, r.stderr
    assert (d / "euclidean-exact-K3.h").read_bytes() == (built3 / "euclidean-exact-K3.h").read_bytes()
    assert (d / "coefgen_tables.h").read_bytes() == (built3 / "coefgen_tables.h").read_bytes()
    assert run("verify", str(d / "manifest.json")).returncode == 0


def test_a_genuine_npz_of_another_table_under_this_name_is_caught(built3, tmp_path):
    d = _copy_set(built3, tmp_path)
    _replace_resealed(d, "euclidean-exact-K3.npz", (d / "euclidean-exact-K4.npz").read_bytes())
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 1 and "euclidean-exact-K3.npz: is not the NPZ of" in r.stderr, r.stderr
    r = run("build", "-c", str(d.parent / "coefgen.yaml"), "--jobs", "1")
    assert r.returncode == 0 and "1 solved" in r.stderr, r.stderr
    assert (d / "euclidean-exact-K3.npz").read_bytes() == (built3 / "euclidean-exact-K3.npz").read_bytes()


def test_renamed_table_in_an_npz_only_set_is_caught(tmp_path):
    d = _build_set(tmp_path / "n", SPEC_NPZ)
    _replace_resealed(d, "euclidean-exact-K3.npz", (d / "euclidean-exact-K4.npz").read_bytes())
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 1 and "a table renamed" in r.stderr, r.stderr
    r = run("build", "-c", str(d.parent / "coefgen.yaml"), "--jobs", "1")
    assert r.returncode == 0 and "1 solved" in r.stderr, r.stderr


def test_a_resealed_edited_aggregate_header_fails_verify(built3, tmp_path):
    d = _copy_set(built3, tmp_path)
    text = (d / "coefgen_tables.h").read_text().replace("case 3:", "case 5:")
    _replace_resealed(d, "coefgen_tables.h", text.encode())
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 1 and "coefgen_tables.h: is not the aggregate" in r.stderr, r.stderr


def test_verify_passes_a_set_whose_spec_order_is_not_its_file_order(tmp_path):
    """The aggregate's usage line does not depend on the order of the spec's entries: verify re-derives the
    header from the manifest (records in file-name order) and must find the one build wrote (the default set
    lists kl first, its files start with alpha3)."""
    spec = ("output: t\nformats: [c]\ntables:\n  - {divergence: euclidean, estimator: exact, K: [4, 3]}\n"
            "  - {divergence: alpha:3, estimator: exact, K: [3]}\n")
    d = _build_set(tmp_path / "o", spec)
    r = run("verify", str(d / "manifest.json"))
    assert r.returncode == 0, r.stderr
    assert 'coefgen_table("alpha:3", "exact", 3)' in (d / "coefgen_tables.h").read_text()


def test_old_version_formats_are_parsed_and_compared(built3):
    """Files of another coefgen version cannot be re-rendered byte for byte: parsed instead."""
    from coefgen.verify import format_failures

    payload = json.loads((built3 / "euclidean-exact-K3.json").read_text())
    old = dict(payload, generator_version="0.0.1")
    h = built3 / "euclidean-exact-K3.h"
    assert format_failures(old, "c", str(h), h.read_bytes(), "t") == []
    assert format_failures(old, "c", str(h), _edited_header(built3), "t") != []
    other = json.loads((built3 / "euclidean-exact-K4.json").read_text())
    h4 = built3 / "euclidean-exact-K4.h"
    assert format_failures(dict(other, generator_version="0.0.1"), "c", str(h), h.read_bytes(), "t") != []
    assert format_failures(dict(other, generator_version="0.0.1"), "c", str(h4), h4.read_bytes(), "t") == []


def test_a_table_file_renamed_to_another_tables_name_fails_verify(built3, tmp_path):
    import shutil

    shutil.copy(built3 / "euclidean-exact-K4.npz", tmp_path / "euclidean-exact-K3.npz")
    shutil.copy(built3 / "euclidean-exact-K4.npz", tmp_path / "mine.npz")
    r = run("verify", str(tmp_path / "euclidean-exact-K3.npz"), str(tmp_path / "mine.npz"))
    assert r.returncode == 1 and "holds table 'euclidean-exact-K4'" in r.stderr, r.stderr
    assert "ok " + str(tmp_path / "mine.npz") in r.stdout


# --- issue 20.6: memory is bounded, not only bytes ---------------------------------------------------

def test_a_json_of_empty_lists_is_refused_before_parsing(tmp_path):
    """16 MiB of '[],' would cost ~0.5 GB parsed; it is refused with the cap named, in bounded memory."""
    import tracemalloc

    from coefgen.runtime import TableError, load
    from coefgen.verify import verify_file

    path = tmp_path / "lists.json"
    body = b"[]," * ((16 << 20) // 3)
    path.write_bytes(b"[" + body + b"[]]")
    tracemalloc.start()
    try:
        with pytest.raises(TableError, match="more than 20000 JSON values"):
            load(path)
        lines = verify_file(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(lines) == 1 and "more than 20000 JSON values" in lines[0]
    from coefgen.payload import MAX_FILE_BYTES

    # the file's bytes, a copy, and the reader's capped buffer: nothing of the ~0.5 GB parsed form
    assert peak < 2 * path.stat().st_size + MAX_FILE_BYTES + (8 << 20)
    # a manifest-looking document gets the manifest cap, also before parsing
    path.write_bytes(b'{"schema": "coefgen.manifest/1", "files": [' + b"[]," * (1 << 22) + b"[]]}")
    r = run("verify", str(path))
    assert r.returncode == 1 and "JSON values" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_json_value_bound_is_never_low():
    from coefgen.payload import json_values_upper_bound

    for doc in ([], {}, [1, [2, {"a": [3, "x,y"]}]], {"k": {"l": []}}, "s", 3):
        text = json.dumps(doc)

        def count(x):
            if isinstance(x, list):
                return 1 + sum(count(v) for v in x)
            if isinstance(x, dict):
                return 1 + sum(1 + count(v) for v in x.values())  # keys are values too
            return 1

        assert json_values_upper_bound(text) >= count(doc) - (1 if doc == [] or doc == {} else 0)


HOSTILE_FIELDS = [
    ("bias_lower", -1e308), ("mse_lower", -(10 ** 40)), ("bias_lower", "-1e400"), ("variance_bound", 5),
    ("minimax_level_bracket", [1, 2]), ("witness", {"bias": 0.5, "variance": "0.5", "mse": "0.5"}),
]


@pytest.mark.parametrize("field,value", HOSTILE_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE_FIELDS)])
def test_hostile_field_types_are_failed_claims_not_internal_errors(built, tmp_path, field, value):
    from coefgen.payload import seal

    payload = json.loads((built / "euclidean-exact-K3.json").read_text())
    payload[field] = value
    path = tmp_path / "t.json"
    path.write_text(canonical_json(seal(payload)))
    r = run("verify", str(path))
    assert r.returncode == 1 and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_aqp_parameters_beyond_float64_are_bad_input():
    from coefgen.errors import InputError
    from coefgen.solvers.aqp_params import normalize_aqp_params

    for params in ({"tau": 10 ** 400}, {"max_mse": -(10 ** 400)}, {"max_mse": "plugin", "gamma": 10 ** 400}):
        with pytest.raises(InputError):
            normalize_aqp_params(params)
