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
