"""Consistency of every field a table file states, beyond the re-certified bounds (issue 13, item 7).

``certify.check_claims`` re-proves bias_bound / variance_bound / mse_bound from the float64
values. This module checks that everything else the file says agrees with those values and
with itself, so that re-sealing a file after editing any field is caught:

* identity: divergence canonical, reward formula, K = len(values), estimator known,
  estimator_params valid and those of the estimator, table_id the name coefgen gives it,
  ``certified`` true;
* values_exact: each parses as an exact p/q or decimal whose float64 rounding is values[i];
  for ``exact``, ``plugin`` and ``digamma`` the table is recomputed (exact: U-statistic in
  rational arithmetic; plugin/digamma: 44-digit mpmath) and must be identical;
* numbers: every bound/lower a finite decimal, 0 <= lower <= bound;
* witness: each p in [0, 1], and the stated lower bound is at most |b|, v, m evaluated at
  its witness in mpmath (so a lower bound is a value actually reached);
* minimax_level and its bracket: lower <= level <= upper (exact decimal comparison); level 0 exactly when an exact
  table exists; E*_K <= sup|b| of any table, so bracket lower <= bias_bound; for
  K <= LEVEL_RECOMPUTE_MAX_K the level is recomputed (proven Remez bracket, <= 0.5 s) and the
  two brackets must intersect;
* estimator claims: minimax bias_bound <= 1.01 x bracket upper; aqp tau mode
  bias_bound <= tau x bracket upper; aqp max_mse mode mse_bound <= V.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath

from .compiler import mse_sup_is_infinite

LEVEL_RECOMPUTE_MAX_K = 256  # recomputing E*_K costs <= 0.5 s up to here (1 s at 512, 4 s at 1024, ~23 s at 2048)
_BOUND_FIELDS = (("bias_lower", "bias_bound"), ("variance_lower", "variance_bound"), ("mse_lower", "mse_bound"))
_REL = Fraction(1, 10**9)  # slack for float64 rounding of solver targets (bounds are rounded up)


def _dec(x) -> Fraction | None:
    """A finite decimal string (or p/q) as a Fraction, else None (spec_numbers.parse_file_number:
    ASCII, the file caps checked before converting)."""
    from .spec_numbers import parse_file_number

    try:
        return parse_file_number(x)
    except (ValueError, ZeroDivisionError):
        return None


# The decimal strings a table file states (verify and build parse these only after number_failures).
NUMBER_FIELDS = ("bias_bound", "bias_lower", "variance_bound", "variance_lower", "mse_bound", "mse_lower",
                 "minimax_level")


def number_failures(payload: dict) -> list[str]:
    """One line per decimal string of the file beyond the file-number limits (issue 20.4):
    values_exact, bounds, lowers, minimax level and bracket, witnesses. Checked on the text,
    before any Fraction or mpmath conversion, so a re-sealed ``1e-99999999`` costs nothing.
    A field that is not a string is left to the other checks (they report it)."""
    from .spec_numbers import parse_file_number

    items = []
    ve = payload.get("values_exact")
    if isinstance(ve, list):
        items += [(f"values_exact[{i}]", s) for i, s in enumerate(ve)]
    items += [(f, payload.get(f)) for f in NUMBER_FIELDS]
    br = payload.get("minimax_level_bracket")
    if isinstance(br, list):
        items += [(f"minimax_level_bracket[{i}]", s) for i, s in enumerate(br[:2])]
    wit = payload.get("witness")
    if isinstance(wit, dict):
        items += [(f"witness.{k}", wit[k]) for k in ("bias", "variance", "mse") if k in wit]
    out = []
    for name, text in items:
        if text is None and not name.startswith(("values_exact", "witness")):
            continue  # absent: reported by the checks that need it
        if not isinstance(text, str):
            out.append(f"{name}: {str(text)[:40]!r} is not a decimal string")
            continue
        if name == "mse_bound" and text == "inf":
            continue
        try:
            parse_file_number(text)
        except (ValueError, ZeroDivisionError) as e:
            out.append(f"{name}: {e}")
            if len(out) >= 3:
                break
    return out


def _json_number(x) -> Fraction | None:
    """A finite JSON number (not a bool) within float64's range as a Fraction, else None
    (a 4000-digit integer is not a parameter value; math.isfinite would overflow on it)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, int):
        return Fraction(x) if abs(x) <= 10**308 else None
    return Fraction(x) if math.isfinite(x) else None


def _g(x: Fraction) -> str:
    """A Fraction for a message (%.6g), also beyond float64's range."""
    try:
        return f"{float(x):.6g}"
    except OverflowError:
        return "beyond float64"


def _point_values(values, reward, p: float):
    """(|b(p)|, v(p), m(p)) at one p in (0, 1] in mpmath, precision scaled to the entries."""
    K = len(values)
    tmax = max(1.0, max(abs(v) for v in values))
    dps = 30 + 2 * int(math.log10(tmax)) + int(math.log10(K) + 1)
    with mpmath.workdps(dps):
        P = mpmath.mpf(p)
        Q = 1 - P
        n = K - 1
        # binomial pmf by recurrence, in mpmath (no underflow: mpmath has unbounded exponents)
        w = Q**n
        T = S = mpmath.mpf(0)
        ratio = P / Q if Q != 0 else None
        for c in range(K):
            if Q == 0:
                w = mpmath.mpf(1) if c == n else mpmath.mpf(0)
            t = mpmath.mpf(values[c])
            T += t * w
            S += t * t * w
            if ratio is not None and c < n:
                w = w * ratio * (n - c) / (c + 1)
        r = reward.r_mp(P)
        b = P * (T - r)
        v = P * (S - T * T)
        m = v + b * b / P
        return abs(b), v, m


def consistency_failures(payload: dict, reward) -> list[str]:
    """One line per field of an intact (sha256-valid) payload that disagrees with the rest."""
    from . import compiler
    from .writers import table_id

    out: list[str] = []
    values = payload["values"]
    K = payload["K"]
    est = payload.get("estimator")
    if payload.get("divergence") != reward.name:
        out.append(f"divergence {str(payload.get('divergence'))[:60]!r} is not canonical (canonical: {reward.name[:60]!r})")
    if payload.get("reward") != reward.formula:
        out.append(f"reward {str(payload.get('reward'))[:60]!r} is not r(p) of {reward.name[:60]} ({reward.formula[:60]!r})")
    if payload.get("certified") is not True:
        out.append("certified must be true")
    if est not in compiler.ESTIMATORS:
        return out + [f"estimator {str(est)[:40]!r} is unknown"]
    params = payload.get("estimator_params")
    user = None
    if not isinstance(params, dict):
        out.append("estimator_params must be an object")
    else:
        given = {k: v for k, v in params.items() if k != "solver"}
        try:
            full = compiler.normalize_params(est, given)
            user = compiler.key_params(est, full)
            if {k: v for k, v in full.items() if v is not None} != given:
                out.append(f"estimator_params {given!r} are not the canonical parameters of {est} "
                           f"({ {k: v for k, v in full.items() if v is not None}!r})")
        except ValueError as e:
            out.append(f"estimator_params: {e}")
        if "solver" in params and not isinstance(params["solver"], dict):
            out.append("estimator_params.solver must be an object")
    if user is not None and payload.get("table_id") != table_id(reward.name, est, user, K):
        out.append(f"table_id {str(payload.get('table_id'))[:80]!r} is not the name of this table "
                   f"({table_id(reward.name, est, user, K)!r})")

    out += values_failures(payload, reward)

    # --- bounds and lowers ---------------------------------------------------------
    nums = {}
    for lo_f, up_f in _BOUND_FIELDS:
        for f in (lo_f, up_f):
            if f not in payload:
                if f.endswith("_bound") or f == "bias_lower":
                    out.append(f"{f}: missing")
                continue
            if f == "mse_bound" and payload[f] == "inf" and mse_sup_is_infinite(payload.get("divergence")):
                continue  # proven infinite sup m (alpha:a, a < 1/2); certify.check_claims re-proves it
            q = _dec(payload[f])
            if q is None or q < 0:
                out.append(f"{f} = {str(payload[f])[:40]!r} is not a finite non-negative decimal")
            else:
                nums[f] = q
        if lo_f in nums and up_f in nums and nums[lo_f] > nums[up_f]:
            out.append(f"{lo_f} = {payload[lo_f]} exceeds {up_f} = {payload[up_f]}")

    # --- witness ---------------------------------------------------------------------
    wit = payload.get("witness")
    if wit is not None or any(f in payload for f in ("variance_lower", "mse_lower")):
        if not isinstance(wit, dict) or sorted(wit) != ["bias", "mse", "variance"]:
            out.append("witness must be an object with bias, variance, mse")
        else:
            cache = {}
            for g, (lo_f, _) in enumerate(_BOUND_FIELDS):
                key = lo_f.split("_")[0]
                ws = wit[key]
                pq = _dec(ws)
                p = float(pq) if pq is not None and 0 <= pq <= 1 else math.nan
                if not 0 <= p <= 1:
                    out.append(f"witness.{key} = {str(ws)[:40]!r} is not a p in [0, 1]")
                    continue
                lo = nums.get(lo_f)
                if lo is None or lo == 0 or p == 0:
                    continue
                if p not in cache:
                    cache[p] = _point_values(values, reward, p)
                at = cache[p][g]
                if lo > Fraction(mpmath.nstr(at, 25)) * (1 + _REL) + Fraction(1, 10**300):
                    out.append(f"{lo_f} = {payload[lo_f]} exceeds the value at its witness p = {ws} "
                               f"({mpmath.nstr(at, 12)}): not a lower bound reached there")

    # --- minimax level -------------------------------------------------------------
    out += _level_failures(payload, reward, K, est, nums)
    return out


def values_failures(payload: dict, reward) -> list[str]:
    """values_exact ↔ values (float64 rounding), and closed-form tables recomputed.

    Cheap (no certification): ``build`` runs it on tables it would otherwise keep, so a
    hand edit whose sha256 and manifest were also fixed is re-solved."""
    out = []
    values = payload["values"]
    for i, (s, v) in enumerate(zip(payload["values_exact"], values)):
        q = _dec(s)
        if q is None:
            out.append(f"values_exact[{i}] = {s[:40]!r} is not an exact number")
            break
        try:
            rounds = float(q) == float(v)
        except OverflowError:  # |q| beyond float64 (the file caps allow exponents to ±400)
            rounds = False
        if not rounds:
            out.append(f"values_exact[{i}] = {s[:40]} does not round to values[{i}] = {float(v)!r}")
            break
    est = payload.get("estimator")
    if est in ("exact", "plugin", "digamma"):
        out += _recomputed(payload, reward, est, payload["K"])
    return out


def _recomputed(payload, reward, est, K) -> list[str]:
    """exact / plugin / digamma tables are closed forms: recompute and compare."""
    if est == "exact":
        from .errors import InputError
        from .solvers.exact import exact_table

        try:
            table = exact_table(reward, K)
        except InputError as e:
            return [f"estimator exact: {e}"]
        want = [f"{x.numerator}/{x.denominator}" for x in table]
    else:
        from .rewards import KL
        from .solvers import baselines

        if est == "digamma" and not isinstance(reward, KL):
            return [f"estimator digamma is defined for kl only, not {reward.name[:60]}"]
        entries = baselines.plugin_entries(reward, K) if est == "plugin" else baselines.digamma_entries(K)
        sol = baselines._solution(entries)
        want = sol.values_exact
    got = payload["values_exact"]
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return [f"values_exact[{i}] = {a[:40]} differs from the {est} table recomputed ({b[:40]}): "
                    "the table is not what its estimator gives"]
    return []


def _level_failures(payload, reward, K, est, nums) -> list[str]:
    out = []
    level = _dec(payload.get("minimax_level"))
    br = payload.get("minimax_level_bracket")
    if level is None:
        return [f"minimax_level = {str(payload.get('minimax_level'))[:40]!r} is not a finite decimal"]
    if not isinstance(br, list) or len(br) != 2 or _dec(br[0]) is None or _dec(br[1]) is None:
        return [f"minimax_level_bracket must be [lower, upper] decimals, got {str(br)[:80]}"]
    lo, up = _dec(br[0]), _dec(br[1])
    if not 0 <= lo <= up:
        out.append(f"minimax_level_bracket [{br[0]}, {br[1]}] is not an interval of non-negative numbers")
    elif not lo <= level <= up:  # exact decimal comparison, no rounding slack (issue 22)
        side = "below the lower end" if level < lo else "above the upper end"
        out.append(f"minimax_level {payload['minimax_level']} is not inside its bracket [{br[0]}, {br[1]}] "
                   f"({side}, compared exactly)")
    exact_exists = reward.is_polynomial and reward.degree <= K - 1
    if exact_exists != (up == 0):
        out.append(f"minimax_level bracket [{br[0]}, {br[1]}]: E*_K is 0 exactly when an exact table exists "
                   f"({'it does' if exact_exists else 'it does not'} for {reward.name[:60]} at K = {K})")
    if "bias_bound" in nums and lo > nums["bias_bound"]:
        out.append(f"minimax_level_bracket lower {br[0]} exceeds bias_bound {payload['bias_bound']}: "
                   "no table has bias below E*_K")
    if not exact_exists and K <= LEVEL_RECOMPUTE_MAX_K:
        from .solvers.minimax import minimax_level

        from .errors import CoefgenError

        try:
            lev = minimax_level(reward, K)
        except CoefgenError as e:
            return out + [f"minimax_level: E*_K could not be recomputed to check the bracket ({e})"]
        with mpmath.workdps(60):
            rlo, rup = Fraction(mpmath.nstr(mpmath.mpf(lev.lower), 50)), Fraction(mpmath.nstr(mpmath.mpf(lev.upper), 50))
        slack = (rup - rlo) + rup * Fraction(1, 10**25)
        if up < rlo - slack or lo > rup + slack:
            out.append(f"minimax_level_bracket [{br[0]}, {br[1]}] disagrees with E*_K recomputed: "
                       f"[{mpmath.nstr(lev.lower, 20)}, {mpmath.nstr(lev.upper, 20)}]")
    params = payload.get("estimator_params") if isinstance(payload.get("estimator_params"), dict) else {}
    bias = nums.get("bias_bound")
    if est == "minimax" and up > 0 and bias is not None:
        from .compiler import MINIMAX_SLACK

        if bias > up * Fraction(MINIMAX_SLACK) * (1 + _REL):
            out.append(f"bias_bound {payload['bias_bound']} exceeds {MINIMAX_SLACK} x E*_K: not a minimax table")
    if est == "aqp" and bias is not None and up > 0:
        tau = _json_number(params.get("tau"))
        if tau is not None:
            if bias > tau * up * (1 + _REL):
                out.append(f"bias_bound {payload['bias_bound']} exceeds tau x E*_K = {_g(tau * up)}")
        V = params.get("max_mse")
        mse = nums.get("mse_bound")
        if V is not None and mse is not None:
            solver = params.get("solver") if isinstance(params.get("solver"), dict) else {}
            vnum = V if not isinstance(V, str) else solver.get("max_mse_value")
            vq = _dec(vnum) if isinstance(vnum, str) else _json_number(vnum)
            if vq is None:
                out.append(f"max_mse {str(V)[:40]!r}: the solver's value of V is missing")
            elif mse > vq * (1 + _REL):
                out.append(f"mse_bound {payload['mse_bound']} exceeds max_mse = {_g(vq)}")
    return out
