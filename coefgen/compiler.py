"""Compile one table: parse → solve → certify the float64 values → sealed payload (DESIGN §7).

Pure orchestration (no file I/O): ``compile_table`` returns the payload dict that the
writers render. A certified bound that misses the solver's own target raises CheckError.
"""

from __future__ import annotations

import math
from fractions import Fraction

from . import __version__
from .errors import CheckError, InputError
from .level_process import start_level
from .payload import BASELINES, MAX_K as _PAYLOAD_MAX_K, SCHEMA, seal
from .rewards import Reward, parse_reward
from .writers import table_id

ESTIMATORS = ("exact", "minimax", "aqp", "plugin", "digamma")
# K <= 2048 for every table: certifying an exact table takes ~2 s at K = 2048 but ~45 s at K = 4000 (and
# build verifies it again); the minimax level in every other table is supported up to 2048 anyway.
MAX_K = _PAYLOAD_MAX_K
MAX_K_LEVEL = 2_048   # the minimax level E*_K (in every non-exact table) takes ~23 s at K = 2048 and grows like K^3
# user-facing parameters of each estimator and their defaults (omitted from file names)
ESTIMATOR_DEFAULTS: dict[str, dict] = {
    "exact": {},
    "plugin": {},
    "digamma": {},
    "minimax": {},
    "aqp": {"tau": 10, "objective": "worst", "max_mse": None, "gamma": 1, "monotone": False},
}


def check_K(K) -> int:
    """K as an int in 2..MAX_K, else InputError."""
    if isinstance(K, bool) or not isinstance(K, int):
        raise InputError(f"K must be an integer, got {K!r}")
    if K < 2:
        raise InputError(f"K = {K} is too small: a group needs K >= 2 samples")
    if K > MAX_K:
        raise InputError(f"K = {K} is absurdly large for a group size (the limit is {MAX_K}: certification time)")
    return K


def check_K_level(reward: Reward, K: int) -> None:
    """InputError if the minimax level of ``reward`` at K is beyond the supported range."""
    exact_exists = reward.is_polynomial and reward.degree <= K - 1
    if not exact_exists and K > MAX_K_LEVEL:
        raise InputError(
            f"K = {K}: the minimax level E*_K of {reward.name} (part of every {reward.name} table) is supported "
            f"up to K = {MAX_K_LEVEL} (its high-precision Remez takes ~23 s at K = 2048 and grows like K^3)"
        )


def normalize_params(estimator: str, params: dict | None) -> dict:
    """Full parameter set of ``estimator`` (defaults filled in); InputError on unknown keys."""
    if estimator not in ESTIMATORS:
        raise InputError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    defaults = ESTIMATOR_DEFAULTS[estimator]
    params = dict(params or {})
    if estimator == "aqp" and params.get("tau") is not None and params.get("max_mse") is not None:
        raise InputError("aqp: tau and max_mse are two different modes (bias budget tau*E*_K, or least bias "
                         "under sup m <= max_mse); give one, not both")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise InputError(f"estimator {estimator!r} has no parameter {unknown[0]!r} (parameters: {allowed})")
    full = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    if estimator == "aqp":
        from .solvers.aqp_params import normalize_aqp_params

        full = normalize_aqp_params(full)
    return full


def key_params(estimator: str, full: dict) -> dict:
    """The parameters that differ from their defaults: they name the table."""
    defaults = ESTIMATOR_DEFAULTS[estimator]
    return {k: v for k, v in full.items() if v is not None and defaults.get(k) != v}


def reward_level(reward: Reward, K: int):
    """The minimax level E*_K as a Level-like object (exactly 0 when an exact table exists)."""
    from .solvers.minimax import minimax_level

    return minimax_level(reward, K)


def solve(reward: Reward, K: int, estimator: str, params: dict):
    """Dispatch to the solver; returns a ``Solution``."""
    if estimator == "exact":
        from .solvers.exact import solve_exact

        return solve_exact(reward, K)
    if estimator == "plugin":
        from .solvers.baselines import solve_plugin

        return solve_plugin(reward, K)
    if estimator == "digamma":
        from .solvers.baselines import solve_digamma

        return solve_digamma(reward, K)
    if estimator == "minimax":
        return _solve_minimax(reward, K)
    if estimator == "aqp":
        from .solvers.aqp import solve_aqp

        return solve_aqp(reward, K, **params)
    raise InputError(f"unknown estimator {estimator!r}")  # pragma: no cover - normalize_params


CERT_REL_GAP = 1e-6  # every stated bound is within this relative distance of the certified sup
MINIMAX_SLACK = 1.01  # a minimax table is written only if its certified bias <= 1.01 E*_K


def _solve_minimax(reward: Reward, K: int):
    """The minimax table (Bernstein coefficients of the best weighted approximation)."""
    from .solvers import Solution
    from .solvers.minimax import minimax_table

    values, exact, lev = minimax_table(reward, K)
    return Solution(
        values=values, values_exact=exact, exact=float(lev.upper) == 0.0,
        bias_target=float(lev.upper) * MINIMAX_SLACK,
        params={"level_digits": lev.digits},
    )


def level_json(lev) -> dict:
    """The ``coefgen level --json`` document: numbers as decimal strings.

    lower/upper carry a few digits more than the bracket proves (rounded outward)."""
    d = max(30, lev.digits + 5)
    return {
        "divergence": lev.divergence, "K": lev.K, "level": lev.level,
        "lower": _mp_bound(lev.lower, False, d), "upper": _mp_bound(lev.upper, True, d), "digits": lev.digits,
        "reference": [_mp_str(x, d) for x in lev.reference],
    }


def _mp_str(x, digits: int = 30) -> str:
    import mpmath

    with mpmath.workdps(digits + 10):
        return mpmath.nstr(mpmath.mpf(x), digits)


def check_baseline(baseline, K: int) -> str:
    """``baseline`` (none, loo, mean) valid for group size K, else InputError: under a group
    baseline the trainer runs the (K−1)-sample table, so K >= 3."""
    if baseline not in BASELINES:
        raise InputError(f"unknown baseline {str(baseline)[:40]!r}; choose one of {', '.join(BASELINES)} "
                         "(the group baseline your trainer subtracts: loo = leave-one-out as RLOO, "
                         "mean = the group mean as GRPO/Dr.GRPO)")
    if baseline != "none" and K < 3:
        raise InputError(f"baseline {baseline} needs K >= 3: in a group of {K} every {baseline} advantage is 0 "
                         "whatever the table (the trainer runs the (K-1)-sample table)")
    return baseline


def precheck(divergence: str, K, estimator: str, params: dict | None = None, baseline: str = "none"):
    """Validate a request without solving: (reward, K, full params) or InputError.

    Under a group baseline the solve happens at K − 1 and is checked there."""
    reward = parse_reward(divergence)
    K = check_K(K)
    check_baseline(baseline, K)
    full = normalize_params(estimator, params)
    if baseline != "none":
        precheck(divergence, K - 1, estimator, params)
        return reward, K, full
    check_K_level(reward, K)
    if estimator == "exact":
        from .solvers.exact import exact_table_degree_check

        exact_table_degree_check(reward, K)
    if estimator == "digamma":
        from .solvers.baselines import require_kl

        require_kl(reward)
    if estimator == "aqp":
        from .solvers.aqp_params import check_aqp_reward

        check_aqp_reward(reward, full)
    return reward, K, full


def _solve_certify_level(reward: Reward, K: int, estimator: str, full: dict, pending):
    """(Solution, certificate, Level). An aqp bias budget τ·E*_K is solved with ``level_estimate``
    (a float just below E*_K), so that it does not wait for the proven level; the certified
    bracket must then confirm estimate ≤ E*_K (so every τ claim holds with the proven level)."""
    from .certify import certify
    from .solvers.minimax import level_estimate

    solver_params = full
    estimate = None
    if estimator == "aqp" and full.get("max_mse") is None:
        estimate = level_estimate(reward, K)
        solver_params = {**full, "level": estimate}
    solution = solve(reward, K, estimator, solver_params)
    cert = certify(solution.values, reward, rel_gap=CERT_REL_GAP)
    level = pending.result() if pending is not None else reward_level(reward, K)
    if estimate is not None and estimate > level.lower:
        raise CheckError(f"{reward.name} aqp K={K}: the float64 level estimate {estimate!r} used for the bias "
                         f"budget is above the proven lower bound {float(level.lower)!r} of E*_K; table not written")
    return solution, cert, level


def compile_table(divergence: str, K, estimator: str, params: dict | None = None, baseline: str = "none",
                  inner: dict | None = None, parallel_level: bool = False) -> dict:
    """Solve and certify one table; the sealed payload of DESIGN §7.

    Under a group baseline (loo, mean) the table is ``with_baseline`` of the no-baseline table
    at K − 1: ``inner`` when the caller already has it (never solved twice), else solved here.
    ``parallel_level``: compute the minimax level in a second process while the table is solved
    (large K, two cores; same bytes either way)."""
    if baseline != "none":
        from .baseline import with_baseline

        reward, K, full = precheck(divergence, K, estimator, params, baseline)
        if inner is None:
            inner = compile_table(divergence, K - 1, estimator, params, parallel_level=parallel_level)
        if (inner.get("divergence"), inner.get("K"), inner.get("estimator")) != (reward.name, K - 1, estimator):
            raise ValueError(f"compile_table: inner table {inner.get('table_id')!r} is not {reward.name} "
                             f"{estimator} K={K - 1}")
        return with_baseline(inner, baseline)
    reward, K, full = precheck(divergence, K, estimator, params)
    pending = None if estimator == "minimax" else start_level(reward, K, parallel_level)
    try:
        solution, cert, level = _solve_certify_level(reward, K, estimator, full, pending)
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    if solution.bias_target is not None and cert.bias.upper > solution.bias_target:
        if solution.exact:
            pass  # float64 rounding of an exact rational table: the certified bound states it
        elif estimator == "minimax":
            raise CheckError(
                f"{reward.name} minimax K={K}: float64 rounding of the table's large alternating entries "
                f"destroys the guarantee (certified bias {cert.bias.upper:.6g} > {MINIMAX_SLACK} x E*_K = "
                f"{solution.bias_target:.6g}); use --estimator aqp (e.g. --tau 1.5) for a representable table"
            )
        else:
            raise CheckError(
                f"{reward.name} {estimator} K={K}: certified bias bound {cert.bias.upper:.17g} "
                f"misses the solver's target {solution.bias_target:.17g}; table not written"
            )
    user = key_params(estimator, full)
    estimator_params = {k: v for k, v in full.items() if v is not None}
    if solution.params:
        estimator_params["solver"] = solution.params
    payload = {
        "schema": SCHEMA,
        "generator_version": __version__,
        "table_id": table_id(reward.name, estimator, user, K),
        "divergence": reward.name,
        "reward": reward.formula,
        "K": K,
        "estimator": estimator,
        "estimator_params": estimator_params,
        "baseline": "none",
        "values": [float(v) for v in solution.values],
        "values_exact": list(solution.values_exact),
        "certified": True,
        "bias_bound": _up(cert.bias.upper),
        "bias_lower": _down(cert.bias.lower),
        "variance_bound": _up(cert.variance.upper),
        "variance_lower": _down(cert.variance.lower),
        "mse_bound": _up(cert.mse.upper),
        "mse_lower": _down(cert.mse.lower),
        "witness": {
            "bias": repr(float(cert.bias.witness)),
            "variance": repr(float(cert.variance.witness)),
            "mse": repr(float(cert.mse.witness)),
        },
        "certificate_method": cert.method,
        "bound_rel_tol": CERT_REL_GAP,  # replaced below by the tolerance actually achieved if wider
        "minimax_level": level.level,
        "minimax_level_bracket": [_down_mp(level.lower), _up_mp(level.upper)],
    }
    require_finite_claims(payload)
    payload["bound_rel_tol"] = achieved_rel_tol(payload, f"{reward.name} {estimator} K={K}")
    return seal(payload)


MAX_REL_TOL = 1e-3  # a file whose brackets are looser than this is not written


def bracket_rel_gaps(payload: dict) -> dict:
    """Relative gap (bound − lower)/bound of every stated bracket (bound "inf" = a proven infinite
    sup: exact, gap 0), as Fractions keyed by the bound's field name."""
    names = [("bias_bound", "bias_lower"), ("variance_bound", "variance_lower"), ("mse_bound", "mse_lower")]
    out = {}
    pairs = [(hi, payload.get(hi), payload.get(lo)) for hi, lo in names]
    lev = payload.get("minimax_level_bracket")
    if isinstance(lev, (list, tuple)) and len(lev) == 2:
        pairs.append(("minimax_level_bracket", lev[1], lev[0]))
    for field, hi, lo in pairs:
        if hi is None or lo is None or str(hi).strip() == "inf":
            continue
        try:
            b, a = Fraction(str(hi)), Fraction(str(lo))
        except (ValueError, ZeroDivisionError):
            continue  # malformed numbers are reported by the claim checks
        out[field] = (b - a) / b if b > 0 else Fraction(0)
    return out


def achieved_rel_tol(payload: dict, what: str) -> float:
    """CERT_REL_GAP, or the widest relative gap of the file's brackets rounded up to two
    significant digits when that is wider (stated honestly); CheckError beyond MAX_REL_TOL."""
    field, gap = max(bracket_rel_gaps(payload).items(), key=lambda kv: kv[1], default=(None, Fraction(0)))
    if gap <= Fraction(CERT_REL_GAP):
        return CERT_REL_GAP
    if gap > Fraction(MAX_REL_TOL):
        raise CheckError(f"{what}: the certified bracket of {field} has relative gap {float(gap):.3g} "
                         f"> {MAX_REL_TOL:g}; table not written")
    e = math.floor(math.log10(gap))
    tol = math.ceil(gap / Fraction(10) ** (e - 1)) * Fraction(10) ** (e - 1)  # ≥ gap, 2 digits
    out = float(f"{float(tol):.1e}")
    return out if Fraction(out) >= gap else float(f"{float(tol) * (1 + 1e-9):.2e}")


CLAIM_FIELDS = ("bias_bound", "bias_lower", "variance_bound", "variance_lower", "mse_bound", "mse_lower",
                "minimax_level")


def require_finite_claims(payload: dict) -> None:
    """CheckError (exit 1, nothing written) unless every stated bound is a finite decimal with
    lower <= bound: a table never says ``certified: true`` beside a nan/inf or unproven bound.
    Shared by ``solve`` and ``build`` (both go through compile_table)."""
    bad = []
    nums = {}
    for f in CLAIM_FIELDS + ("minimax_level_bracket",):
        vals = payload.get(f)
        if f == "mse_bound" and vals == "inf" and mse_sup_is_infinite(payload.get("divergence")):
            continue  # a proven claim (certify), not a numerical failure
        for v in (vals if isinstance(vals, list) else [vals]):
            try:
                q = Fraction(v) if isinstance(v, str) and math.isfinite(float(v)) else None
            except (ValueError, ZeroDivisionError):
                q = None
            if q is None:
                bad.append(f"{f} = {v!r}")
            else:
                nums[f] = q
    for lo, up in (("bias_lower", "bias_bound"), ("variance_lower", "variance_bound"), ("mse_lower", "mse_bound")):
        if lo in nums and up in nums and nums[lo] > nums[up]:
            bad.append(f"{lo} > {up}")
    if not level_in_bracket(payload):
        bad.append("minimax_level outside minimax_level_bracket")
    if bad:
        raise CheckError(
            f"{payload.get('divergence')} {payload.get('estimator')} K={payload.get('K')}: certification did not "
            f"prove finite bounds ({', '.join(bad)}); table not written")


def level_in_bracket(payload: dict) -> bool:
    """lower <= minimax_level <= upper, compared exactly as decimals (Fraction): the stated level
    lies inside its own proven bracket (issue 22). False for malformed or missing numbers."""
    br = payload.get("minimax_level_bracket")
    if not isinstance(br, (list, tuple)) or len(br) != 2:
        return False
    try:
        lo, level, up = (Fraction(str(v)) for v in (br[0], payload.get("minimax_level"), br[1]))
    except (ValueError, ZeroDivisionError, TypeError):
        return False
    return lo <= level <= up


def mse_sup_is_infinite(divergence) -> bool:
    """True where ``mse_bound: "inf"`` is a proven claim: the divergence's sup m is infinite for
    every table (``Reward.mse_sup_infinite``: alpha:a, a < 1/2)."""
    if not isinstance(divergence, str):
        return False
    try:
        return parse_reward(divergence).mse_sup_infinite
    except InputError:
        return False  # malformed names are reported elsewhere


def _up(x: float) -> str:
    """Shortest decimal string whose exact value is >= the float64 x (an upper bound)."""
    return _directed_repr(float(x), math.inf)


def _down(x: float) -> str:
    """Shortest decimal string whose exact value is <= the float64 x (a lower bound)."""
    return _directed_repr(float(x), -math.inf)


def _directed_repr(x: float, direction: float) -> str:
    if not math.isfinite(x):
        return repr(x)
    target, y = Fraction(x), x
    s = repr(y)
    while (Fraction(s) < target) if direction > 0 else (Fraction(s) > target):
        y = math.nextafter(y, direction)  # repr rounded the wrong way: step one ulp outward
        s = repr(y)
    return s


def _mp_bound(x, up: bool, digits: int = 30) -> str:
    """Decimal string with ``digits`` significant digits, >= x (up) or <= x (down), exactly: the
    nearest such decimal when it lies on the right side, else the next one outward (issue 22)."""
    from .solvers.minimax import decimal_digits, decimal_text, mpf_fraction

    q = mpf_fraction(x)
    if q == 0:
        return "0.0"
    mode = "up" if (up == (q > 0)) else "down"  # away from zero for an upper bound of x > 0
    n, e = decimal_digits(abs(q), digits, "nearest")
    text = decimal_text(n, e, fixed_always=False, strip_zeros=True)
    if (Fraction(text) < abs(q)) if mode == "up" else (Fraction(text) > abs(q)):
        text = decimal_text(*decimal_digits(abs(q), digits, mode), fixed_always=False, strip_zeros=True)
    return text if q > 0 else "-" + text


def _up_mp(x) -> str:
    return _mp_bound(x, True)


def _down_mp(x) -> str:
    return _mp_bound(x, False)
