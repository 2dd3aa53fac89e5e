from fractions import Fraction

import mpmath
import numpy as np
import pytest

from coefgen.errors import InputError
from coefgen.rewards import format_exact, parse_exact, parse_reward


@pytest.mark.parametrize("name,canon", [
    ("kl", "kl"), ("KL", "kl"), ("alpha:1", "kl"), ("euclidean", "euclidean"), ("alpha:0.50", "alpha:0.5"),
    ("alpha:3", "alpha:3"), ("alpha:6/2", "alpha:3"), ("alpha:1/3", "alpha:1/3"), ("poly:1,0,2/4,0", "poly:1,0,0.5"),
    ("alpha:2.5e0", "alpha:2.5"),
])
def test_canonical_names(name, canon):
    assert parse_reward(name).name == canon


@pytest.mark.parametrize("name,needle", [
    ("alpha:0", "inadmissible"), ("alpha:-1", "inadmissible"), ("alpha:x", "not a number"), ("poly:", "coefficients"),
    ("poly:1,,2", "coefficients"), ("poly:1/0", "zero denominator"), ("entropy", "unknown divergence"), ("alpha:", "not a number"),
])
def test_bad_names_say_what_is_wrong_and_list_forms(name, needle):
    with pytest.raises(InputError) as e:
        parse_reward(name)
    msg = str(e.value)
    assert needle in msg and "valid forms" in msg and "\n" not in msg


def test_polynomial_structure():
    assert parse_reward("kl").poly_coefficients is None
    assert parse_reward("alpha:2.5").poly_coefficients is None
    e = parse_reward("euclidean")
    assert e.poly_coefficients == (Fraction(-1), Fraction(1)) and e.degree == 1
    a3 = parse_reward("alpha:3")  # r = (p^2 - 1)/2
    assert a3.poly_coefficients == (Fraction(-1, 2), Fraction(0), Fraction(1, 2)) and a3.degree == 2
    assert parse_reward("poly:0,0,0").degree == 0


@pytest.mark.parametrize("name", ["kl", "alpha:0.5", "alpha:2.5", "alpha:3", "poly:1,-2,1/3"])
def test_numpy_and_mpmath_agree_and_f_vanishes_at_zero(name):
    r = parse_reward(name)
    p = np.array([1e-9, 1e-3, 0.2, 0.7, 1.0])
    with mpmath.workdps(30):
        ref = np.array([float(r.r_mp(mpmath.mpf(x))) for x in p])
    np.testing.assert_allclose(r.r(p), ref, rtol=1e-12, atol=1e-300)
    assert r.f(np.array([0.0]))[0] == 0 and r.f_mp(0) == 0
    # admissible: p r(p) -> 0
    assert abs(r.f(np.array([1e-300]))[0]) < 1e-100


@pytest.mark.parametrize("name", ["kl", "alpha:0.5", "alpha:1.5", "poly:1,-2,3"])
def test_f_derivatives_match_finite_differences(name):
    r = parse_reward(name)
    p = np.array([0.01, 0.3, 0.9])
    with mpmath.workdps(40):
        for k in (1, 2, 3):
            ref = [float(mpmath.diff(lambda x: r.f_mp(x), mpmath.mpf(x), k)) for x in p]
            np.testing.assert_allclose(r.f_derivative(p, k), ref, rtol=1e-9)


@pytest.mark.parametrize("name", ["kl", "alpha:0.5", "alpha:2.5", "poly:1,-2,3"])
def test_bounds_are_bounds(name):
    r = parse_reward(name)
    for a in (1e-12, 1e-4, 0.1, 0.5, 1.0):
        grid = np.linspace(0, a, 2001)[1:]
        assert np.max(np.abs(r.f(grid))) <= r.f_abs_bound(a)
        for k in (1, 2):
            p0, p1 = np.array([a / 2]), np.array([a])
            inner = np.linspace(a / 2, a, 501)
            assert np.max(np.abs(r.f_derivative(inner, k))) <= r.f_derivative_abs_bound(p0, p1, k)[0]


def test_exact_number_formats():
    assert parse_exact("0.25") == Fraction(1, 4) and parse_exact("-3/6") == Fraction(-1, 2)
    assert parse_exact("1e-3") == Fraction(1, 1000)
    for s in ("1.2.3", "a", "1/2/3", ""):
        with pytest.raises(ValueError):
            parse_exact(s)
    assert format_exact(Fraction(1, 8)) == "0.125" and format_exact(Fraction(-1, 3)) == "-1/3"
    assert format_exact(Fraction(-1, 20)) == "-0.05" and format_exact(Fraction(7)) == "7"


# --- issue 13, items 9, 12, 13: numbers in names are ASCII, bounded before conversion ------

@pytest.mark.parametrize("name,needle", [
    ("alpha:\u0661", "ASCII digits"),            # Arabic-Indic one
    ("alpha:\uff13", "ASCII digits"),            # full-width three
    ("poly:\uff10,\uff11", "ASCII digits"),
    ("alpha:\u0663/\u0662", "ASCII digits"),
    ("poly:1e99999999", "exponent outside"),
    ("poly:1e-99999999", "exponent outside"),
    ("alpha:1e10", "outside the supported range"),
    ("alpha:0.001", "outside the supported range"),
    ("poly:1e13", "outside the supported range"),
    ("poly:1e-13,1", "outside the supported range"),
    ("poly:" + "1" * 65, "longer than 64 characters"),
    ("x" * 200_000, "(200000 characters)"),
])
def test_bad_numbers_are_input_errors_and_fast(name, needle):
    import time

    from coefgen.errors import InputError

    t0 = time.monotonic()
    with pytest.raises(InputError) as e:
        parse_reward(name)
    assert needle in str(e.value) and len(str(e.value)) < 600
    assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("name,a", [("alpha:0.01", Fraction(1, 100)), ("alpha:1000", Fraction(1000)),
                                    ("alpha:1.5e2", Fraction(150)), ("alpha:25e-2", Fraction(1, 4))])
def test_range_ends_and_exponents_parse_exactly(name, a):
    assert parse_reward(name).a == a


def test_poly_coefficient_range_ends_parse():
    r = parse_reward("poly:1e12,-1e-12,0")
    assert r.coefficients == (Fraction(10**12), Fraction(-1, 10**12))
