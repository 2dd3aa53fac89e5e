"""verify re-proves or cross-checks every field of a table (issue 13, item 7): tamper matrix.

Each case edits one claim of a real table and re-seals the sha256 (so only the content
checks can catch it); verify must name a failure. Untouched tables, and a value moved by one
ulp together with its values_exact (claims still hold), verify clean.
"""

import math
from fractions import Fraction

import pytest

from coefgen.compiler import compile_table
from coefgen.payload import seal
from coefgen.verify import verify_payload

_CACHE = {}

TABLES = {
    "exact": ("alpha:3", 6, "exact", None),
    "plugin": ("kl", 6, "plugin", None),
    "digamma": ("kl", 6, "digamma", None),
    "minimax": ("kl", 6, "minimax", None),
    "aqp": ("kl", 6, "aqp", {"tau": 2}),
    "aqp-V": ("kl", 6, "aqp", {"max_mse": 1}),
}


def table(kind):
    if kind not in _CACHE:
        d, K, e, p = TABLES[kind]
        _CACHE[kind] = compile_table(d, K, e, p)
    return dict(_CACHE[kind])


def _scale(s, f):
    return repr(float(s) * f)


def _set(field, value):
    def edit(p):
        p[field] = value(p) if callable(value) else value
    return edit


def _relabel(est):
    def edit(p):
        p["estimator"] = est
        p["table_id"] = p["table_id"].replace(p["table_id"].split("-")[1], est)
    return edit


def _witness(key, value):
    def edit(p):
        p["witness"] = dict(p["witness"], **{key: value})
    return edit


def _values_exact(i, text):
    def edit(p):
        p["values_exact"] = list(p["values_exact"])
        p["values_exact"][i] = text(p["values_exact"][i]) if callable(text) else text
    return edit


def _both(i, factor):
    """values[i] and values_exact[i] moved together (a consistent but wrong table)."""
    def edit(p):
        p["values"] = list(p["values"])
        p["values_exact"] = list(p["values_exact"])
        p["values"][i] = p["values"][i] * factor
        p["values_exact"][i] = repr(p["values"][i])
    return edit


TAMPER = [
    ("minimax", "level x10", lambda p: p.update(minimax_level=_scale(p["minimax_level"], 10),
                                                 minimax_level_bracket=[_scale(x, 10) for x in p["minimax_level_bracket"]]),
     "minimax_level"),
    ("aqp", "level x10", lambda p: p.update(minimax_level=_scale(p["minimax_level"], 10),
                                             minimax_level_bracket=[_scale(x, 10) for x in p["minimax_level_bracket"]]),
     "minimax_level"),
    ("plugin", "level outside bracket", _set("minimax_level", lambda p: _scale(p["minimax_level"], 1.5)), "not inside its bracket"),
    ("exact", "level nonzero for exact", _set("minimax_level_bracket", ["0", "0.1"]), "exact table exists"),
    ("plugin", "variance_lower above bound", _set("variance_lower", lambda p: _scale(p["variance_bound"], 2)), "variance_lower"),
    ("aqp", "mse_lower above bound", _set("mse_lower", lambda p: _scale(p["mse_bound"], 2)), "mse_lower"),
    ("plugin", "bias_lower not reached at witness", _witness("bias", "0.999"), "witness"),
    ("aqp", "witness outside [0,1]", _witness("mse", "1.5"), "witness.mse"),
    ("digamma", "witness missing", _set("witness", {"bias": "0.5"}), "witness"),
    ("plugin", "values_exact disagree", _values_exact(2, "1/3"), "values_exact[2]"),
    ("aqp", "values_exact garbage", _values_exact(0, "abc"), "values_exact[0]"),
    ("plugin", "relabelled digamma", _relabel("digamma"), "recomputed"),
    ("digamma", "relabelled plugin", _relabel("plugin"), "recomputed"),
    ("exact", "exact changed consistently", _both(3, 1.5), "exact table recomputed"),
    ("plugin", "plugin changed consistently", _both(2, 1.0 + 2**-40), "plugin table recomputed"),
    ("minimax", "relabelled aqp", _relabel("aqp"), "estimator_params"),
    ("aqp", "tau lowered", lambda p: p.update(estimator_params=dict(p["estimator_params"], tau=1.01),
                                              table_id=p["table_id"].replace("tau2", "tau1.01")), "tau x E*_K"),
    ("aqp-V", "max_mse lowered", lambda p: p.update(estimator_params=dict(p["estimator_params"], max_mse=0.01),
                                                    table_id=p["table_id"].replace("max_mse1", "max_mse0.01")), "max_mse"),
    ("aqp", "unknown parameter", lambda p: p.update(estimator_params=dict(p["estimator_params"], gamma=3)), "gamma"),
    ("plugin", "table_id renamed", _set("table_id", "kl-plugin-K7"), "table_id"),
    ("plugin", "reward formula", _set("reward", "p"), "reward"),
    ("plugin", "divergence alias", _set("divergence", "alpha:1"), "canonical"),
    ("plugin", "certified missing", lambda p: p.pop("certified"), "certified"),
    ("exact", "bias_bound nan", _set("bias_bound", "nan"), "bias_bound"),
    ("exact", "mse_bound negative", _set("mse_bound", "-1"), "mse_bound"),
]


@pytest.mark.parametrize("kind,what,edit,needle", TAMPER, ids=[f"{t[0]}:{t[1]}" for t in TAMPER])
def test_tampered_and_resealed_claims_fail_verify(kind, what, edit, needle):
    p = table(kind)
    assert verify_payload(p, "t") == []
    edit(p)
    lines = verify_payload(seal(p), "t")
    assert lines and any(needle in line for line in lines), lines


def test_one_ulp_change_with_its_values_exact_still_verifies_when_the_claims_hold():
    """README: a value moved by one ulp (and values_exact with it) is a different table; if
    every stated claim still holds for it, verify accepts it (claims are what is proven)."""
    p = table("aqp")
    i = 2
    p["values"] = list(p["values"])
    p["values_exact"] = list(p["values_exact"])
    p["values"][i] = math.nextafter(p["values"][i], math.inf)
    p["values_exact"][i] = str(Fraction(p["values"][i]))
    assert verify_payload(seal(p), "t") == []
    # but the value alone (values_exact left behind) is caught
    q = table("aqp")
    q["values"] = list(q["values"])
    q["values"][i] = math.nextafter(q["values"][i], math.inf)
    assert any("does not round" in line for line in verify_payload(seal(q), "t"))
