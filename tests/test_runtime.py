"""Runtime: load JSON/NPZ with integrity checks; counts from answers; lookup."""

import json

import numpy as np
import pytest

from coefgen import __version__
from coefgen.runtime import TableError, answer_counts, grouped_counts, load
from coefgen.writers import render

from tables_util import exact_payload


@pytest.fixture
def files(tmp_path):
    p = exact_payload("alpha:3", 6)
    j = tmp_path / "t.json"
    j.write_bytes(render(p, "json", __version__))
    n = tmp_path / "t.npz"
    n.write_bytes(render(p, "npz", __version__))
    return p, j, n


def test_load_json_and_npz_agree(files):
    p, j, n = files
    a, b = load(j), load(n)
    assert a.K == b.K == 6 and a.sha256 == b.sha256 == p["sha256"]
    assert np.array_equal(a.values.view(np.uint64), b.values.view(np.uint64))
    counts = np.array([[1, 2, 6], [3, 3, 4]])
    assert a(counts).shape == (2, 3)
    assert np.array_equal(a(counts), np.asarray(p["values"])[counts - 1])


def test_counts_outside_range_raise_never_wrap(files):
    t = load(files[1])
    for bad in ([0], [7], [-1], [1, 2, 99]):
        with pytest.raises(ValueError, match="outside 1..K"):
            t(np.array(bad))
    with pytest.raises(ValueError, match="integers"):
        t(np.array([1.5]))


def test_rejects_altered_values(files, tmp_path):
    p, j, _ = files
    doc = json.loads(j.read_text())
    doc["values"][2] += 1e-12
    bad = tmp_path / "altered.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(TableError, match="sha256 mismatch"):
        load(bad)


def test_rejects_wrong_schema_and_truncated(files, tmp_path):
    _, j, n = files
    doc = json.loads(j.read_text())
    doc["schema"] = "other/1"
    w = tmp_path / "w.json"
    w.write_text(json.dumps(doc))
    with pytest.raises(TableError, match="unsupported schema"):
        load(w)
    for src in (j, n):
        data = src.read_bytes()
        cut = tmp_path / ("cut" + src.suffix)
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(TableError):
            load(cut)
    with pytest.raises(TableError, match="cannot read"):
        load(tmp_path / "missing.json")


def test_npz_values_must_match_payload(files, tmp_path):
    import io
    import zipfile

    p, _, n = files
    # rebuild the npz with a tampered values member but the original payload
    buf = io.BytesIO()
    with zipfile.ZipFile(n) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "values.npy":
                arr = np.array(p["values"]) * 2
                b = io.BytesIO()
                np.save(b, arr)
                data = b.getvalue()
            zout.writestr(info, data)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(buf.getvalue())
    with pytest.raises(TableError, match="differs from its payload"):
        load(bad)


def brute_counts(answers, groups):
    return np.array([sum(1 for b, h in zip(answers, groups) if h == g and b == a) for a, g in zip(answers, groups)])


def test_answer_counts_hashables_and_noncontiguous_groups():
    rng = np.random.default_rng(7)
    groups = rng.permutation(np.repeat(np.arange(5), 8))  # 5 groups of K=8, interleaved
    answers = [("x", int(v)) if v % 2 else str(v) for v in rng.integers(0, 4, size=40)]
    assert np.array_equal(answer_counts(answers, groups), brute_counts(answers, groups))
    uids = [f"uid-{g}" for g in groups]  # string uids as verl carries
    ids = rng.integers(0, 3, size=40)
    assert np.array_equal(answer_counts(ids, uids), brute_counts(list(ids), uids))
    assert np.array_equal(answer_counts(["a", "b", "a"]), [2, 1, 2])


def test_grouped_counts_and_rewards_for(files):
    t = load(files[1])
    a = np.array([[1, 1, 2, 3, 3, 3], [0, 0, 0, 0, 0, 0]])
    assert np.array_equal(grouped_counts(a), [[2, 2, 1, 3, 3, 3], [6] * 6])
    flat = a.ravel()
    gid = np.repeat([10, 20], 6)
    np.testing.assert_array_equal(t.rewards_for(flat, gid), t(grouped_counts(a)).ravel())
    with pytest.raises(ValueError, match="K = 6"):
        t.rewards_for([1, 2, 3], [0, 0, 0])


def test_torch_in_torch_out(files):
    torch = pytest.importorskip("torch")
    t = load(files[1])
    out = t(torch.tensor([1, 6]))
    assert isinstance(out, torch.Tensor) and out.tolist() == [t.values[0], t.values[5]]


# --- issue 13, items 7, 9, 12: load refuses on form what verify refuses (TableError) -----

def _npz(members: dict, compression=0) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, arr in members.items():
            b = io.BytesIO()
            np.lib.format.write_array(b, arr, allow_pickle=False)
            zf.writestr(name, b.getvalue())
    return buf.getvalue()


def _payload_text(p):
    from coefgen.payload import canonical_json

    return np.array(canonical_json(p))


def _json_dup(p):
    text = render(p, "json", __version__).decode()
    return text.replace('"values": [', '"values": [0, 0, 0, 0, 0, 0], "values": [', 1).encode()


def _resealed(**changes):
    from coefgen.payload import canonical_json, seal

    p = dict(exact_payload("alpha:3", 6), **changes)
    return canonical_json(seal(p)).encode()


FORM = [
    ("duplicate key", lambda p: _json_dup(p), "duplicate key"),
    ("huge int", lambda p: render(p, "json", __version__).replace(b'"K": 6', b'"K": ' + b"9" * 5000), "invalid JSON"),
    ("deep nesting", lambda p: b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
    ("NaN constant", lambda p: render(p, "json", __version__).replace(b'"K": 6', b'"K": NaN'), "invalid JSON"),
    ("K = 1", lambda p: _resealed(K=1, values=[0.0], values_exact=["0"]), "K must be an integer in 2..2048"),
    ("K = 4096", lambda p: _resealed(K=4096, values=[0.0] * 4096, values_exact=["0"] * 4096), "K must be an integer"),
    ("huge value", lambda p: _resealed(values=[10**400] + p["values"][1:]), "finite float64"),
    ("complex NPZ values", lambda p: _npz({"payload.npy": _payload_text(p),
                                           "values.npy": np.asarray(p["values"], dtype=complex)}), "float64"),
    ("extra NPZ member", lambda p: _npz({"payload.npy": _payload_text(p), "values.npy": np.asarray(p["values"]),
                                         "evil.npy": np.zeros(3)}), "members must be exactly"),
    ("float32 NPZ values", lambda p: _npz({"payload.npy": _payload_text(p),
                                           "values.npy": np.asarray(p["values"], dtype=np.float32)}), "float64"),
    ("2-d NPZ values", lambda p: _npz({"payload.npy": _payload_text(p),
                                       "values.npy": np.asarray(p["values"]).reshape(2, 3)}), "1-d float64"),
    ("bytes NPZ payload", lambda p: _npz({"payload.npy": np.array(b"x"), "values.npy": np.asarray(p["values"])}),
     "0-d unicode"),
]


@pytest.mark.parametrize("what,make,needle", FORM, ids=[f[0] for f in FORM])
def test_load_refuses_bad_form_with_a_table_error(tmp_path, what, make, needle):
    from coefgen.verify import verify_file

    path = tmp_path / "t.bin"
    path.write_bytes(make(exact_payload("alpha:3", 6)))
    with pytest.raises(TableError, match=needle):
        load(path)
    assert verify_file(str(path))  # verify refuses the same file


def test_npz_zip_bomb_is_refused_before_decompressing(tmp_path, monkeypatch):
    import zipfile

    import coefgen.payload as P

    monkeypatch.setattr(P, "MAX_FILE_BYTES", 1 << 20)
    p = exact_payload("alpha:3", 6)
    data = _npz({"payload.npy": _payload_text(p), "values.npy": np.zeros(1 << 19)}, compression=zipfile.ZIP_DEFLATED)
    assert len(data) < 20_000  # 4 MiB of zeros deflate to a few KB
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    with pytest.raises(TableError, match="over the 1 MiB limit"):
        load(path)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_load_refuses_devices_without_reading_them(path):
    with pytest.raises(TableError, match="not a regular file"):
        load(path)
