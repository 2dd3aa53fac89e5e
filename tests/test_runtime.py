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


# --- one rule for missing answers and group keys ------------------------------------------

def rule_counts(answers, groups):
    """The documented rule with plain loops: None/NaN match nothing; others compare with ==."""
    def missing(x):
        return x is None or (isinstance(x, float) and x != x)

    return [1 if missing(a) else sum(1 for b, h in zip(answers, groups) if h == g and not missing(b) and b == a)
            for a, g in zip(answers, groups)]


def test_missing_answers_are_singletons_whatever_their_object():
    nan = float("nan")
    answers = [np.nan, np.nan, np.nan, nan, float("nan"), None, None, "a", "a", np.float64("nan"), 1, 1.0]
    groups = [0] * len(answers)
    counts = answer_counts(answers, groups)
    assert counts.tolist() == rule_counts(answers, groups)
    assert counts.tolist()[:7] == [1] * 7 and counts.tolist()[-2:] == [2, 2]
    # a float array with NaNs: the same rule
    assert answer_counts(np.array([np.nan, np.nan, 2.0, 2.0])).tolist() == [1, 1, 2, 2]
    # integers beyond int64 and numpy scalars compare as Python values
    assert answer_counts([2 ** 70, 2 ** 70, np.int64(3), 3]).tolist() == [2, 2, 2, 2]


def test_group_keys_compared_as_python_objects_and_missing_keys_refused():
    answers = ["x"] * 4
    assert answer_counts(answers, [1, 1, "1", "1"]).tolist() == [2, 2, 2, 2]  # 1 and "1": two groups
    assert answer_counts(answers, [1, 1.0, True, np.int64(1)]).tolist() == [4] * 4  # equal as Python says
    for bad in (None, float("nan"), np.nan):
        with pytest.raises(ValueError, match="group key 2 is"):
            answer_counts(answers, ["u", "u", bad, "u"])
    with pytest.raises(ValueError, match="group key"):
        answer_counts([1.0, 2.0], np.array([0.0, np.nan]))


def test_rewards_for_invalid_reward_and_family(files):
    from coefgen.runtime import TableFamily

    t = load(files[1])
    out = t.rewards_for(["a", "a", None, np.nan, "b", "b"], invalid_reward=-5.0)
    assert out.tolist() == [t.values[1], t.values[1], -5.0, -5.0, t.values[1], t.values[1]]
    fam = TableFamily([t])
    with pytest.raises(ValueError, match=r"a group has 4 samples and this family has no table for that size \(sizes 6\)"):
        fam.rewards_for(["a"] * 4)
    with pytest.raises(ValueError, match="more than the largest table"):
        fam.rewards_for(["a"] * 7)


# --- the default set -----------------------------------------------------------------------

REPO_TABLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "tables"


@pytest.fixture
def repo_default_set(monkeypatch):
    import coefgen.runtime as R

    monkeypatch.setattr(R, "DEFAULT_TABLES_DIR", REPO_TABLES)
    return R


def test_default_table_is_the_spec_s_first_choice(repo_default_set):
    R = repo_default_set
    manifest = json.loads((REPO_TABLES / "manifest.json").read_text())
    for K in (2, 8, 24, 64, 256, 512, 1024):
        t = R.default_table("kl", K=K)
        # independent: the json records of (kl, K), ordered by their spec entry
        recs = sorted((r for r in manifest["files"] if r["format"] == "json" and r["inputs"]["divergence"] == "kl"
                       and r["inputs"]["K"] == K), key=lambda r: r["entry"]["index"])
        assert t.payload["table_id"] == recs[0]["table_id"]
        assert t.estimator == "aqp" and t.K == K and t.baseline == "none"
        assert t.payload["estimator_params"]["gamma"] == (0.75 if K <= 256 else 1)
    assert R.default_table("euclidean", K=5).estimator == "exact"
    fam = R.default_family("kl", K=12)
    assert fam.sizes == tuple(range(2, 13)) and fam.baseline == "none"
    assert fam.table_for(7).sha256 == R.default_table("kl", K=7).sha256


def test_default_table_refusals(repo_default_set):
    R = repo_default_set
    with pytest.raises(ValueError, match=r"no kl table with baseline 'none' for K = 100 \(kl/none tables: K = 2..64, 128, 256, 512, 1024\)"):
        R.default_table("kl", K=100)
    with pytest.raises(ValueError, match="no 'kl2' tables"):
        R.default_table("kl2", K=8)
    with pytest.raises(ValueError, match="baseline must be one of none, loo, mean"):
        R.default_table("kl", K=8, baseline="grpo")
    with pytest.raises(TypeError, match="K .* is required"):
        R.default_table("kl")


def make_baseline_payload(none_payload, baseline):
    """A loo/mean table at K from the none table at K - 1 (t_K = t_{K-1}), schema /2, re-sealed."""
    from coefgen.payload import SCHEMA, seal
    from coefgen.writers import table_id

    p = dict(none_payload)
    K = p["K"] + 1
    p.update(schema=SCHEMA, K=K, baseline=baseline, values=p["values"] + p["values"][-1:],
             values_exact=p["values_exact"] + p["values_exact"][-1:],
             table_id=table_id(p["divergence"], p["estimator"], p["estimator_params"], K, baseline))
    return seal(p)


def write_set(directory, payloads):
    """A table set directory: the JSON files and a manifest.json (each record its spec entry 0)."""
    import hashlib

    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for p in payloads:
        name = p["table_id"] + ".json"
        data = render(p, "json", __version__)
        (directory / name).write_bytes(data)
        files.append({"format": "json", "path": name, "sha256": hashlib.sha256(data).hexdigest(),
                      "table_id": p["table_id"], "entry": {"index": 0},
                      "inputs": {"K": p["K"], "divergence": p["divergence"], "estimator": p["estimator"],
                                 "params": p["estimator_params"], "baseline": p.get("baseline", "none")}})
    (directory / "manifest.json").write_text(json.dumps({"schema": "coefgen.manifest/1", "generator_version": __version__,
                                                         "files": files}))


def test_default_family_with_a_group_baseline_and_tampering(tmp_path, monkeypatch):
    import coefgen.runtime as R

    none = {K: json.loads((REPO_TABLES / f"euclidean-exact-K{K}.json").read_text()) for K in range(2, 6)}
    mean = [make_baseline_payload(none[K - 1], "mean") for K in range(3, 7)]
    d = tmp_path / "set"
    write_set(d, list(none.values()) + mean)
    monkeypatch.setattr(R, "DEFAULT_TABLES_DIR", d)
    fam = R.default_family("euclidean", K=6, baseline="mean")
    assert fam.sizes == (3, 4, 5, 6) and fam.baseline == "mean"
    assert fam.table_for(5).values.tolist() == none[4]["values"] + none[4]["values"][-1:]
    # groups of 1 and 2 under a group baseline: reward 0 (no signal), documented
    assert fam.rewards_for(["a", "b", "c"], [0, 0, 1]).tolist() == [0.0, 0.0, 0.0]
    assert R.default_family("euclidean", K=4).sizes == (2, 3, 4)
    # a file changed after the manifest was written: refused
    victim = d / (mean[1]["table_id"] + ".json")
    victim.write_bytes(victim.read_bytes().replace(b'"baseline": "mean"', b'"baseline": "loo" '))
    with pytest.raises(TableError, match="sha256 differs from the default set's manifest"):
        R.default_table("euclidean", K=4, baseline="mean")


# --- composition -----------------------------------------------------------------------------

def test_compose_rewards_signs_and_targets():
    from coefgen.runtime import OBJECTIVES, compose_rewards

    t = np.array([-2.0, -0.5, 0.0])
    R = np.array([1.0, 0.0, 3.0])
    lp = np.log([0.2, 0.3, 0.5])
    assert OBJECTIVES == ("kl_regularized", "entropy_bonus", "consensus")
    np.testing.assert_array_equal(compose_rewards(t, "consensus"), t)
    np.testing.assert_array_equal(compose_rewards(t, "consensus", 2.0, R), [-3.0, -1.0, 3.0])
    np.testing.assert_array_equal(compose_rewards(t, "entropy_bonus", 0.5, R), [2.0, 0.25, 3.0])
    np.testing.assert_allclose(compose_rewards(t, "kl_regularized", 0.5, R, lp), R + 0.5 * lp - 0.5 * t, rtol=0, atol=0)
    np.testing.assert_array_equal(compose_rewards(t, "kl_regularized"), -t)
    for bad, err in [(dict(objective="kl"), ValueError), (dict(objective="consensus", beta=0), ValueError),
                     (dict(objective="consensus", beta=float("inf")), ValueError),
                     (dict(objective="entropy_bonus", log_p_ref=lp), ValueError),
                     (dict(objective="consensus", task_rewards=[1.0, np.nan, 0.0]), ValueError),
                     (dict(objective="consensus", task_rewards=[1.0]), ValueError)]:
        with pytest.raises(err):
            compose_rewards(t, **bad)


def test_kl_regularized_reward_is_stationary_at_q():
    """With t[c] at its target r(p) = log p, the kl_regularized reward of every answer is equal
    exactly at q ∝ p_ref·exp(R/β) (the stationary point of the answer-level game, where every
    answer's expected cost is the same), and not elsewhere."""
    from coefgen.runtime import compose_rewards

    beta = 0.7
    R = np.array([1.0, 0.0, -0.5])
    lp = np.log(np.array([0.5, 0.3, 0.2]))
    q = np.exp(lp + R / beta)
    q /= q.sum()
    assert np.ptp(compose_rewards(np.log(q), "kl_regularized", beta, R, lp)) < 1e-12
    p = np.array([0.4, 0.4, 0.2])
    assert np.ptp(compose_rewards(np.log(p), "kl_regularized", beta, R, lp)) > 1e-3


def test_grouped_counts_follows_the_missing_answer_rule():
    assert grouped_counts(np.array([[1.0, np.nan, np.nan, 1.0]])).tolist() == [[2, 1, 1, 2]]
    obj = np.empty((1, 4), dtype=object)
    obj[0] = [None, None, "a", np.nan]
    assert grouped_counts(obj).tolist() == [[1, 1, 1, 1]]
