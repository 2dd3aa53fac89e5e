"""compile_table: the decimal bounds written are bounds of the certified floats; claims verify."""

import random
from fractions import Fraction

import pytest

from coefgen.certify import certify, check_claims
from coefgen.compiler import _down, _up, compile_table
from coefgen.errors import CheckError
from coefgen.rewards import parse_reward


def test_directed_decimal_strings_bound_the_float():
    rng = random.Random(5)
    for _ in range(20000):
        x = rng.random() * 10 ** rng.randint(-30, 5)
        assert Fraction(_up(x)) >= Fraction(x) >= Fraction(_down(x))
        assert float(_up(x)) in (x, __import__("math").nextafter(x, 2 * x + 1))


@pytest.mark.parametrize("name,K,est", [("kl", 12, "plugin"), ("kl", 9, "digamma"), ("kl", 10, "minimax"),
                                        ("alpha:0.5", 7, "minimax"), ("poly:1,-1/3,2", 5, "exact")])
def test_stated_bounds_bracket_the_certificate_and_verify(name, K, est):
    payload = compile_table(name, K, est)
    reward = parse_reward(name)
    cert = certify(payload["values"], reward)
    for field, lower, br in [("bias_bound", "bias_lower", cert.bias), ("variance_bound", "variance_lower", cert.variance),
                             ("mse_bound", "mse_lower", cert.mse)]:
        assert Fraction(payload[field]) >= Fraction(br.upper)
        assert Fraction(payload[lower]) <= Fraction(br.lower)
    assert check_claims(payload, reward) == []
    if est == "minimax":
        level = Fraction(payload["minimax_level"])
        assert Fraction(payload["bias_lower"]) <= level * Fraction(101, 100)
        assert Fraction(payload["bias_bound"]) <= level * Fraction(101, 100)


def test_minimax_refused_where_float64_breaks_the_guarantee():
    with pytest.raises(CheckError, match="use --estimator aqp"):
        compile_table("kl", 64, "minimax")


def test_verify_holds_a_file_to_its_stated_tolerance():
    from coefgen.payload import seal
    from coefgen.verify import verify_payload

    payload = compile_table("kl", 6, "digamma")
    assert payload["bound_rel_tol"] == 1e-6 and verify_payload(payload, "t") == []
    loose = dict(payload, bias_bound=repr(float(payload["bias_bound"]) * 1.01))
    assert any("exceeds the certified upper bound" in line for line in verify_payload(seal(loose), "t"))
    assert verify_payload(seal(dict(loose, bound_rel_tol=0.02)), "t") == []
    assert "bound_rel_tol must be" in verify_payload(seal(dict(loose, bound_rel_tol="x")), "t")[0]


# ----------------------------------------------------------------------------- issue 13.3
def test_verify_rejects_a_bound_loose_against_the_certified_lower_end(monkeypatch):
    """A certifier whose upper end is loose (as float64 was for kl minimax K=24: gap 3.2e-4) no
    longer lets a file state a bound that far above the sup: the stated bound must lie within
    bound_rel_tol of the certified lower end (the value at the certified witness)."""
    import coefgen.certify as cmod
    from coefgen.payload import seal
    from coefgen.verify import verify_payload

    payload = compile_table("kl", 6, "digamma")
    real = cmod.certify

    def loose_certify(values, reward, **kw):
        c = real(values, reward, **kw)
        b = c.bias
        return cmod.Certificate(cmod.Bracket(b.lower, b.upper * (1 + 3.2e-4), b.witness), c.variance, c.mse, c.method)

    monkeypatch.setattr(cmod, "certify", loose_certify)
    inflated = cmod.certify(payload["values"], parse_reward("kl")).bias.upper
    # the stated bracket itself is tight (bias_lower raised to the bound): only the certified lower end catches it
    bad = seal(dict(payload, bias_bound=repr(inflated), bias_lower=repr(inflated)))
    lines = verify_payload(bad, "t")
    assert any("bias_bound" in ln and "bound_rel_tol = 1e-06" in ln for ln in lines), lines
    # the raised bias_lower is also caught independently: it is not reached at its witness
    assert any("bias_lower" in ln and "witness" in ln for ln in lines), lines
    # an honest wider tolerance (stated lower end kept) passes
    honest = seal(dict(payload, bias_bound=repr(inflated), bound_rel_tol=1e-3))
    assert verify_payload(honest, "t") == []


def test_verify_rejects_a_stated_bracket_wider_than_the_files_tolerance():
    from coefgen.payload import seal
    from coefgen.verify import verify_payload

    payload = compile_table("kl", 6, "digamma")
    low = Fraction(payload["mse_lower"]) * (1 - Fraction(1, 10**4))
    lines = verify_payload(seal(dict(payload, mse_lower=str(float(low)))), "t")
    assert len(lines) == 1 and lines[0].startswith("t: mse_bound: stated bracket has relative gap 0.0001")
    lev = payload["minimax_level_bracket"]
    wide = [str(float(Fraction(lev[0]) * Fraction(9, 10))), lev[1]]
    lines = verify_payload(seal(dict(payload, minimax_level_bracket=wide)), "t")
    assert any(line.startswith("t: minimax_level_bracket: stated bracket has relative gap 0.1") for line in lines)


def test_achieved_tolerance_is_stated_honestly():
    from coefgen.compiler import CERT_REL_GAP, achieved_rel_tol

    def p(bound, lower):
        return {"bias_bound": bound, "bias_lower": lower, "variance_bound": "1", "variance_lower": "1",
                "mse_bound": "inf", "mse_lower": "3", "minimax_level_bracket": ["0.5", "0.5"]}

    assert achieved_rel_tol(p("1", "0.9999995"), "x") == CERT_REL_GAP
    assert achieved_rel_tol(p("0", "0"), "x") == CERT_REL_GAP
    for lower in ("0.99967637", "0.9999", "0.99999", "0.9995"):
        tol = achieved_rel_tol(p("1", lower), "x")
        gap = 1 - Fraction(lower)
        assert Fraction(tol) >= gap and tol <= float(gap) * 1.1  # rounded up to 2 digits
    with pytest.raises(CheckError, match="relative gap"):
        achieved_rel_tol(p("1", "0.99"), "x")


def test_kl_minimax_K24_states_the_default_tolerance_and_verifies():
    from coefgen.verify import verify_payload

    payload = compile_table("kl", 24, "minimax")
    assert payload["bound_rel_tol"] == 1e-6
    b, lo = Fraction(payload["bias_bound"]), Fraction(payload["bias_lower"])
    assert (b - lo) / b <= Fraction(1, 10**6)  # was 3.2e-4
    assert verify_payload(payload, "t") == []


def test_cli_verify_exits_1_naming_the_loose_field(tmp_path):
    """Tamper matrix (issue 13.3): a re-sealed file whose bracket is wider than its bound_rel_tol."""
    import subprocess
    import sys

    from coefgen.payload import seal
    from coefgen.writers import json_bytes

    payload = compile_table("kl", 6, "plugin")
    wide = seal(dict(payload, bias_bound=repr(float(payload["bias_bound"]) * (1 + 5e-6))))
    path = tmp_path / "t.json"
    path.write_bytes(json_bytes(wide))
    r = subprocess.run([sys.executable, "-m", "coefgen.cli", "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "bias_bound" in r.stdout + r.stderr and "bound_rel_tol" in r.stdout + r.stderr
    path.write_bytes(json_bytes(seal(dict(wide, bound_rel_tol=1e-5))))  # stated honestly: accepted
    r = subprocess.run([sys.executable, "-m", "coefgen.cli", "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
