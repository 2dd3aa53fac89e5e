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
        compile_table("kl", 30, "minimax")


def test_verify_holds_a_file_to_its_stated_tolerance():
    from coefgen.payload import seal
    from coefgen.verify import verify_payload

    payload = compile_table("kl", 6, "digamma")
    assert payload["bound_rel_tol"] == 1e-6 and verify_payload(payload, "t") == []
    loose = dict(payload, bias_bound=repr(float(payload["bias_bound"]) * 1.01))
    assert any("exceeds the certified upper bound" in line for line in verify_payload(seal(loose), "t"))
    assert verify_payload(seal(dict(loose, bound_rel_tol=0.02)), "t") == []
    assert "bound_rel_tol must be" in verify_payload(seal(dict(loose, bound_rel_tol="x")), "t")[0]
