"""The stated minimax level lies inside its own proven bracket, exactly (issue 22).

Every table file states ``minimax_level`` (one decimal) and ``minimax_level_bracket``
[lower, upper] (proven: lower <= E*_K <= upper). The three decimals are compared as exact
rationals (Fraction): no rounding slack. Checked on freshly built payloads, on every committed
table file, on the string formatting itself (adversarial brackets narrower than one rounding
step of the level), and ``verify`` refuses a re-sealed file whose level leaves its bracket.
"""

import glob
import json
import os
import subprocess
import sys
from fractions import Fraction

import mpmath
import pytest

from coefgen.compiler import _mp_bound, compile_table, level_in_bracket
from coefgen.payload import canonical_json, seal
from coefgen.solvers.minimax import decimal_digits, decimal_text, format_level, minimax_level, mpf_fraction

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _three(payload):
    lo, up = (Fraction(x) for x in payload["minimax_level_bracket"])
    return lo, Fraction(payload["minimax_level"]), up


_BUILT = {}


def _built(args):
    if args not in _BUILT:
        d, K, est, params = args
        _BUILT[args] = compile_table(d, K, est, dict(params) if params else None)
    return _BUILT[args]


AQP_DEFAULT = (("gamma", 0.75), ("max_mse", "4plugin"))  # the default set's kl aqp parameters


@pytest.mark.parametrize("args", [
    ("kl", 2, "minimax", None),     # K = 2: level above the bracket under 0.2.0
    ("kl", 24, "minimax", None),    # K = 24: level below the bracket under 0.2.0
    ("kl", 5, "aqp", AQP_DEFAULT),
    ("kl", 12, "aqp", AQP_DEFAULT),
    ("kl", 40, "aqp", AQP_DEFAULT),
    ("kl", 6, "plugin", None),
    ("alpha:0.5", 7, "minimax", None),
], ids=lambda a: "-".join(str(x) for x in a[:3]))
def test_fresh_payload_level_inside_its_bracket(args):
    payload = _built(args)
    lo, level, up = _three(payload)
    assert 0 < lo <= level <= up, (payload["minimax_level"], payload["minimax_level_bracket"])
    assert level_in_bracket(payload)
    # the stated bracket contains the solver's proven (binary) bracket: rounding is outward only
    lev = minimax_level(args[0], args[1])
    assert lo <= mpf_fraction(lev.lower) and mpf_fraction(lev.upper) <= up
    # and the level keeps at least the digits the bracket proves
    assert len(payload["minimax_level"].lstrip("0.").replace(".", "")) >= lev.digits


def _table_files():
    pats = [os.path.join(ROOT, "tables", "*.json"), os.path.join(ROOT, "coefgen", "default_tables", "*.json")]
    return sorted(f for p in pats for f in glob.glob(p) if not f.endswith("manifest.json"))


def test_every_committed_table_states_its_level_inside_its_bracket():
    """Fails on a default set written before the fix (coefgen <= 0.2.0: 68 files); passes
    once the set is rebuilt."""
    files = _table_files()
    if not files:
        pytest.skip("no committed table files in this checkout")
    bad = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            p = json.load(fh)
        lo, level, up = _three(p)
        if not lo <= level <= up:
            side = "below" if level < lo else "above"
            bad.append(f"{os.path.basename(f)} ({side} by {float(abs(level - (lo if level < lo else up)) / up):.2g} rel)")
    assert not bad, f"{len(bad)} of {len(files)} files state minimax_level outside their bracket: " + ", ".join(bad[:5])


@pytest.mark.parametrize("lo, up, digits", [
    # the three shapes: a bracket narrower than one rounding step of the d-digit midpoint
    ("0.000000310029218965401842100489189885", "0.000000310029218965401842101318671141", 20),
    ("0.000564153993185820389105400807896", "0.000564153993185820389105401850156", 21),
    ("0.0772019924667603309181098440167", "0.0772019924667603309181098628944", 24),
    ("0.99999999999999999999", "1.00000000000000000004", 19),   # carry across a power of ten
    ("0.0996", "0.0996000001", 2),
    ("0.5", "0.5", 3),                                          # degenerate bracket
])
def test_format_level_lands_inside_any_bracket(lo, up, digits):
    s = format_level(Fraction(lo), Fraction(up), digits)
    assert Fraction(lo) <= Fraction(s) <= Fraction(up)
    assert "e" not in s  # fixed notation, as in every file so far


def test_decimal_digits_directed_rounding_is_exact():
    rng = __import__("random").Random(7)
    for _ in range(500):
        x = Fraction(rng.randrange(1, 10**40), rng.randrange(1, 10**40)) * Fraction(10) ** rng.randrange(-30, 5)
        for digits in (1, 5, 30):
            dn, e = decimal_digits(x, digits, "down")
            upn, e2 = decimal_digits(x, digits, "up")
            lo = Fraction(dn) * Fraction(10) ** (e - digits + 1)
            hi = Fraction(upn) * Fraction(10) ** (e2 - digits + 1)
            assert 10 ** (digits - 1) <= dn < 10**digits and 10 ** (digits - 1) <= upn < 10**digits
            assert lo <= x <= hi
            assert hi - lo <= Fraction(10) ** (e - digits + 1)  # neighbours: one unit apart at most


def test_mp_bound_is_outward_for_high_precision_numbers():
    rng = __import__("random").Random(11)
    with mpmath.workprec(600):
        for _ in range(300):
            x = mpmath.mpf(rng.random()) ** 7 / 3 * mpmath.mpf(10) ** rng.randrange(-12, 1)
            q = mpf_fraction(x)
            assert Fraction(_mp_bound(x, False)) <= q <= Fraction(_mp_bound(x, True))


def test_verify_refuses_a_resealed_file_whose_level_leaves_its_bracket(tmp_path):
    payload = dict(_built(("kl", 2, "minimax", None)))
    lo, _level, up = _three(payload)
    assert verify_exit(tmp_path / "ok.json", payload)[0] == 0
    # just below the lower end / just above the upper end, by ~1e-35 relative (far below any
    # rounding step of the stated digits: only an exact comparison catches it)
    below = decimal_text(*decimal_digits(lo * (1 - Fraction(1, 10**35)), 45, "down"))
    above = decimal_text(*decimal_digits(up * (1 + Fraction(1, 10**35)), 45, "up"))
    assert Fraction(below) < lo and Fraction(above) > up
    for name, text in (("low", below), ("high", above)):
        code, out = verify_exit(tmp_path / f"{name}.json", dict(payload, minimax_level=text))
        assert code == 1 and "minimax_level" in out and "not inside its bracket" in out, out


def verify_exit(path, payload):
    path.write_text(canonical_json(seal(payload)), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "coefgen.cli", "verify", str(path)], capture_output=True, text=True,
                       cwd=ROOT)
    assert "Traceback" not in r.stderr
    return r.returncode, r.stdout + r.stderr
