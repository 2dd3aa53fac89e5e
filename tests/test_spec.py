"""Table-set spec (coefgen.yaml): expansion, and errors with file:line before any solving."""

import os
import textwrap

import pytest
from click.testing import CliRunner

from coefgen.errors import InputError
from coefgen.spec import load_spec, parse_spec


def write(tmp_path, text, name="coefgen.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


GOOD = """
output: built
formats: [c, json]
tables:
  - divergence: [euclidean, alpha:3]
    estimator: exact
    K: [3..5, 8]
  - divergence: kl
    estimator: digamma
    K: 16
"""


def test_expands_entries_ranges_and_lists(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    ids = [t.table_id for t in spec.tables]
    assert ids == ["euclidean-exact-K3", "euclidean-exact-K4", "euclidean-exact-K5", "euclidean-exact-K8",
                   "alpha3-exact-K3", "alpha3-exact-K4", "alpha3-exact-K5", "alpha3-exact-K8", "kl-digamma-K16"]
    assert spec.output == os.path.join(str(tmp_path), "built")  # relative to the spec file
    assert spec.formats == ("json", "c")  # canonical order
    assert spec.tables[0].entry == {"index": 0, "divergence": ["euclidean", "alpha:3"], "estimator": "exact",
                                    "K": "[3..5, 8]"}
    assert spec.tables[-1].line == 9
    assert len({t.inputs_key for t in spec.tables}) == len(ids)


def test_aqp_params_beside_the_estimator(tmp_path):
    spec = load_spec(write(tmp_path, """
        tables:
          - divergence: kl
            estimator: aqp
            tau: 5
            K: 8
          - divergence: kl
            estimator: aqp
            K: 8
    """))
    assert [t.table_id for t in spec.tables] == ["kl-aqp-tau5-K8", "kl-aqp-K8"]
    assert spec.tables[0].lookup_estimator == "aqp-tau5"
    assert spec.tables[1].lookup_estimator == "aqp"
    assert spec.tables[0].inputs_key != spec.tables[1].inputs_key


BAD = [
    # (spec text, line, fragment of the message)
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: 4\nouptut: x\n", 5, "unknown key 'ouptut' (did you mean 'output'?)"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    k: 4\n", 4, "unknown key 'k' (did you mean 'K'?)"),
    ("tables:\n  - divergence: kl\n    estimator: exact\n    K: 2..8\n", 3, "not a polynomial reward"),
    ("tables:\n  - divergence: alpha:3\n    estimator: exact\n    K: [2, 3]\n", 4, "an exact table needs K >= 3"),
    ("tables:\n  - divergence: alpha:3\n    estimator: exact\n    K:\n      - 4\n      - 2\n", 6, "needs K >= 3"),
    ("tables:\n  - divergence: euclidean\n    estimator: digamma\n    K: 4\n", 3, "digamma' is defined for kl only"),
    ("tables:\n  - divergence: euclidean\n    estimator: exact\n    tau: 3\n    K: 4\n", 4, "'tau' does not apply to estimator 'exact'"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: 8..2\n", 4, "empty range '8..2'"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: 4.5\n", 4, "K must be an integer, got float 4.5"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: 1\n", 4, "K = 1 is too small"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: two\n", 4, "neither an integer nor a range"),
    ("tables:\n  - divergence: klx\n    estimator: digamma\n    K: 4\n", 2, "unknown divergence 'klx'"),
    ("tables:\n  - divergence: alpha:-1\n    estimator: plugin\n    K: 4\n", 2, "inadmissible"),
    ("tables:\n  - divergence: no\n    estimator: plugin\n    K: 4\n", 2, "must be a string, got bool False; quote it"),
    ("tables:\n  - divergence: kl\n    estimator: minmax\n    K: 4\n", 3, "unknown estimator 'minmax' (did you mean 'minimax'?)"),
    ("tables:\n  - divergence: kl\n    K: 4\n", 2, "missing key 'estimator'"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: [2..8]\n"
     "  - divergence: kl\n    estimator: digamma\n    K: [16, 8]\n", 7,
     "table kl-digamma-K8 is already produced by tables[0] (line 4)"),
    ("formats: [json, pdf]\ntables:\n  - divergence: kl\n    estimator: digamma\n    K: 4\n", 1, "unknown format 'pdf'"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: 4\n    K: 8\n", 5, "duplicate key 'K' (first at line 4)"),
    ("tables:\n  - divergence: kl\n   estimator: digamma\n", 3, "not valid YAML"),
    ("output: x\n", 1, "no 'tables' list"),
    ("tables: []\n", 1, "non-empty list"),
    ("tables:\n  - divergence: kl\n    estimator: aqp\n    objective: best\n    K: 4\n", 4, "objective must be 'worst' or 'mean'"),
    ("tables:\n  - divergence: kl\n    estimator: aqp\n    tau: 0.5\n    K: 4\n", 4, "tau"),
    ("tables:\n  - divergence: kl\n    estimator: plugin\n    K: 200000\n", 4, "absurdly large"),
    # issue 13: tags, merge keys, ranges, caps, numbers, parameter modes, file-name length
    ("tables:\n  - divergence: !foo kl\n    estimator: plugin\n    K: 4\n", 2, "tag '!foo' is not supported"),
    ("tables:\n  - !!python/object:os.system {}\n", 2, "is not supported"),
    ("base: &b {divergence: kl, estimator: plugin}\ntables:\n  - <<: *b\n    K: 4\n", 3, "merge keys"),
    ("tables:\n  - divergence: kl\n    estimator: plugin\n    K: 2..100001\n", 4, "absurdly large"),
    ("tables:\n  - divergence: kl\n    estimator: plugin\n    K: \"\uff12..\uff16\"\n", 4, "neither an integer nor a range"),
    ("tables:\n  - divergence: alpha:\u0661\n    estimator: plugin\n    K: 4\n", 2, "ASCII digits"),
    ("tables:\n  - divergence: poly:1e99999999\n    estimator: plugin\n    K: 4\n", 2, "exponent outside"),
    ("tables:\n  - divergence: alpha:1e10\n    estimator: plugin\n    K: 4\n", 2, "outside the supported range"),
    ("tables:\n  - divergence: kl\n    estimator: aqp\n    tau: 3\n    max_mse: 1\n    K: 4\n", 4, "give one, not both"),
    ("tables:\n  - divergence: kl\n    estimator: aqp\n    tau: 1.0e+6\n    K: 4\n", 4, "1 <= tau <= 10000"),
    ("tables:\n  - divergence: kl\n    estimator: aqp\n    max_mse: 1.0e+308\n    K: 4\n", 4, "0 < V <= 1e+06"),
    ("tables:\n  - divergence: poly:" + ",".join(["0.000000000001"] * 20) + "\n    estimator: plugin\n    K: 4\n", 2,
     "255-byte limit"),
    ("tables:\n" + "".join(f"  - {{divergence: {d}, estimator: plugin, K: 2..2048}}\n"
                          for d in ("kl", "alpha:2.5", "alpha:0.5", "alpha:1.5", "alpha:3.5")), 6, "more than 10000 tables"),
    ("tables:\n" + "".join(f"  - {{divergence: alpha:{a}, estimator: aqp, K: 1900..2048}}\n" for a in range(2, 30)),
     4, "more solver work than the limit"),
    # issue 20.12: exit 2, not an internal error
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: " + "9" * 900_000 + "\n", 4,
     "integers in a spec have at most 40"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: [" + "1" * 41 + "]\n", 4, "MAX_INT_CHARS"),
    ("tables: " + "[" * 100_000 + "\n", 1, "nested too deeply"),
    ("tables:\n  - divergence: kl\n    estimator: digamma\n    K: 4\n    K: 5\n", 5, "duplicate key 'K'"),
]


@pytest.mark.parametrize("text,line,fragment", BAD, ids=[b[2][:30] for b in BAD])
def test_errors_name_file_and_line(tmp_path, text, line, fragment):
    path = str(tmp_path / "coefgen.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    with pytest.raises(InputError) as err:
        load_spec(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert fragment in msg, msg


def test_cli_build_rejects_a_bad_spec_before_solving(tmp_path, monkeypatch):
    import coefgen.compiler
    from coefgen.cli import main

    calls = []
    monkeypatch.setattr(coefgen.compiler, "compile_table", lambda *a, **k: calls.append(a))
    # the first entry is fine; the error is in the last one: nothing may be solved or written
    path = write(tmp_path, """
        output: out
        tables:
          - divergence: euclidean
            estimator: exact
            K: 2..4
          - divergence: kl
            estimator: exact
            K: 4
    """)
    res = CliRunner().invoke(main, ["build", "--config", path, "--jobs", "1"])
    assert res.exit_code == 2, res.output
    assert f"{path}:7: tables[1]: kl with estimator exact" in res.output
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_embedded_default_spec():
    spec = load_spec(None)
    ids = {t.table_id for t in spec.tables}
    assert spec.output == "tables" and spec.formats == ("json", "npz", "c")
    for K in [*range(2, 65), 128, 256]:  # README "Choosing a table": chosen by the game
        assert f"kl-aqp-gamma0.75-max_mse4plugin-K{K}" in ids
    for K in (512, 1024):
        assert f"kl-aqp-max_mse4plugin-K{K}" in ids
    for K in range(2, 65):
        assert f"euclidean-exact-K{K}" in ids
    for K in range(3, 65):
        assert f"alpha3-exact-K{K}" in ids
    assert "alpha3-exact-K2" not in ids  # degree 2 needs K >= 3
    assert {f"kl-minimax-K{K}" for K in range(2, 25)} <= ids
    assert len(ids) == len(spec.tables)


def test_parse_spec_keeps_relative_output_without_base():
    spec = parse_spec("output: t\ntables:\n  - {divergence: kl, estimator: plugin, K: 4}\n", "<s>", None)
    assert spec.output == "t" and spec.formats == ("json",)


def test_twenty_thousand_aliases_to_a_long_range_are_refused_fast(tmp_path):
    """issue 13, item 9: an 80 KB spec must not expand into 2e9 tables (was 4 GB)."""
    import time

    for K in ("2..100001", "2..2048"):
        text = f"tables:\n  - &e {{divergence: kl, estimator: plugin, K: {K}}}\n" + "".join("  - *e\n" for _ in range(20_000))
        path = write(tmp_path, text)
        assert len(text) < 200_000
        t0 = time.monotonic()
        with pytest.raises(InputError, match="absurdly large|already produced"):
            load_spec(path)
        assert time.monotonic() - t0 < 5


def test_spec_file_size_is_capped(tmp_path):
    path = tmp_path / "coefgen.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\ntables: []\n")
    with pytest.raises(InputError, match="KiB limit"):
        load_spec(str(path))
