"""coefgen plot: weighted bias and variance curves of table files."""

import numpy as np
from click.testing import CliRunner

from coefgen import __version__
from coefgen.cli import main
from coefgen.plot import weighted_curves
from coefgen.writers import render, write_atomic


def make_table(tmp_path, monkeypatch, divergence, K, estimator):
    import coefgen.compiler

    payload = coefgen.compiler.compile_table(divergence, K, estimator, {})
    path = tmp_path / f"{payload['table_id']}.json"
    write_atomic(path, render(payload, "json", __version__))
    return path, payload


def test_weighted_curves_of_an_exact_table(tmp_path, monkeypatch):
    _, payload = make_table(tmp_path, monkeypatch, "euclidean", 8, "exact")
    p = np.logspace(-6, 0, 50)
    b, v = weighted_curves(payload, p)
    assert np.max(np.abs(b)) < 1e-14  # unbiased
    # t_c = (c-1)/(K-1) - 1: Var_p = p(1-p)/(K-1), so v(p) = p^2 (1-p)/(K-1)
    np.testing.assert_allclose(v, p * p * (1 - p) / 7, rtol=1e-9, atol=1e-15)


def test_weighted_bias_of_digamma_is_within_its_bound(tmp_path, monkeypatch):
    _, payload = make_table(tmp_path, monkeypatch, "kl", 8, "digamma")
    p = np.logspace(-6, 0, 400)
    b, v = weighted_curves(payload, p)
    # mean of digamma table: log p + sum_{v>=K} (1-p)^v / v  => b(p) = p * sum(...) > 0
    expected = p * np.array([sum((1 - x) ** n / n for n in range(8, 4000)) for x in p])
    np.testing.assert_allclose(b[p > 1e-2], expected[p > 1e-2], rtol=1e-9, atol=1e-13)
    assert np.max(np.abs(b)) <= float(payload["bias_bound"])


def test_plot_writes_a_png(tmp_path, monkeypatch):
    a, _ = make_table(tmp_path, monkeypatch, "kl", 8, "digamma")
    b, _ = make_table(tmp_path, monkeypatch, "kl", 6, "plugin")
    c, _ = make_table(tmp_path, monkeypatch, "euclidean", 8, "exact")
    out = tmp_path / "plot.png"
    res = CliRunner().invoke(main, ["plot", str(a), str(b), str(c), "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_refuses_a_damaged_file(tmp_path, monkeypatch):
    a, _ = make_table(tmp_path, monkeypatch, "kl", 8, "digamma")
    a.write_text(a.read_text().replace('"K": 8', '"K": 9'))
    res = CliRunner().invoke(main, ["plot", str(a), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "sha256 mismatch" in res.output or "values must be" in res.output
    assert not (tmp_path / "x.png").exists()
