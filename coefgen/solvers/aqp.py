"""AQP: the variance-optimal table under a bias budget (DESIGN §4–5, issue 5).

Problem (t ∈ R^K, B_c(p) the count law, r the reward):

    b(p) = p·(Σ_c t_c B_c(p) − r(p))                  weighted bias (linear in t)
    m(p) = p·Σ_c B_c(p)·(t_c − r(p))²                  weighted MSE (convex quadratic in t)

    worst:    minimise sup_p m(p)      s.t. sup_p |b(p)| ≤ τ·E*_K
    mean:     minimise ∫₀¹ m(p) dp     s.t. sup_p |b(p)| ≤ τ·E*_K
    max_mse:  minimise sup_p |b(p)|    s.t. sup_p m(p) ≤ V
              (V a number, or k × the plug-in's certified sup m: '<k>plugin')
    gamma:    with max_mse, minimise sup_p p^γ·|T(p) − r(p)| instead (0 < γ ≤ 1; γ = 1 is b):
              the game's equilibrium is set by the unweighted error at small p (DESIGN §10)
    monotone: any mode with the linear constraints t_1 ≤ … ≤ t_K added

Method: a cutting-plane (exchange) scheme for the semi-infinite program. Each round solves
the cone program restricted to finite sets of points p with Clarabel (the solver cvxpy
uses, called through its native API: the problem is assembled directly as sparse
matrices, which is far faster than cvxpy canonicalisation at K = 1024):

* every bias point gives |p·(B(p)·t − r(p))| ≤ β, in split form: one equality row
  z_p = p·B(p)·δ (the only row with the Bernstein window's nonzeros) and two rows ±z_p
  against the budget (half the nonzeros of two full rows, so a KKT factor 2-5x cheaper at
  large K); a round the split form does not solve to full accuracy is solved again with
  the two full rows (not once that has failed to reach full accuracy as well in an earlier
  round of the same solve, nor when the solver stopped within 100x its tolerances: _Fallback,
  _near_solved);
* every MSE point gives one second-order cone ‖(√(p·B_c(p))·(t_c − r(p)))_c‖₂ ≤ u, so
  that sup m ≤ u² (the sum-of-squares form; the quadratic form itself is never built);
* the mean objective is the exact quadratic Σ_c w_c t_c² − 2 g_c t_c + h_c with Beta /
  digamma / trigamma closed forms for w, g, h.

Entries with B_c(p) < 1e-17 are dropped (their weight is far below the solver's tolerance).
The variables are the correction δ to the previous table (t = t_prev + δ), which keeps the
right-hand sides O(1). After each round the table is rounded to 12 significant digits
(the shipped table: cross-machine solver noise far below that vanishes, so the same
inputs give byte-identical tables), |b| and m are evaluated on a dense grid (uniform in
θ with p = sin²θ, plus log-spaced points near 0), every local maximum is refined by golden
section and the violating / nearly active ones are added. The loop stops when the rounded
table's bias is inside the budget with margin and sup m matches the round's optimum.
The final table is certified (coefgen.certify); the grid optimum (dual objective, shifted
to the untightened budget) is a lower bound on the semi-infinite optimum, so the file
records both and their gap.

The bias budget handed to the solver is tightened, β_s = β − min(2e-5·β, (β − E*_K)/2),
so the certified bound of the float64 table lands inside β = τ·E*_K.

Tight budgets at large K need large alternating entries, and double precision then fails in
one of several ways (the cone solver stalls or fails, declares the grid infeasible, or the
entries are too large to hold the bias within the slack β − β_s). Such an attempt is retried
with a wider slack (RETRY_SLACKS, up to MAX_SLACK = 1e-2·β: a coarser rounding quantum, the
bias may sit further below β); a retry also accepts a reduced-accuracy round as the last one,
since its table is certified independently and its gap comes from the separable dual bound.
An attempt refused for reduced accuracy hands its exchange state (grids, last iterate, σ: _Warm)
to the next attempt, which goes on from there; after any other refusal the next attempt starts
afresh. A round whose split program reaches full accuracy is solved as before (so is every
round of the default table set: all 393 of its cone programs are solved by the split form's
first variant), so those tables are written byte for byte as before.

The separable dual bound (``separable_dual_bound``): for multipliers μ ≥ 0 on MSE points and λ
on bias points, the Lagrangian Σ μ_p m_p(t) + Σ λ_q b_q(t) − β Σ|λ_q| is a sum over the
coordinates t_c of convex quadratics, so its minimum over t is a closed form, and any
multipliers (the solver's, even from a reduced-accuracy or failed solve) give a proven lower
bound on the optimum sup m at β over all p ∈ [0, 1]. A refusal states the best such bound, so
a user learns whether a usable table exists at that τ (usually not: the bound is orders of
magnitude above the plug-in's sup m), and a retry's table takes its objective_lower from it
(a reduced-accuracy round has no usable cone dual).
"""

from __future__ import annotations

import math
import time
from decimal import Decimal

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma, gammaln, polygamma

from ..bernstein import count_pmf
from ..errors import CheckError, InputError
from ..rewards import KL, Alpha, Poly, Reward
from . import Solution
from .aqp_params import (  # noqa: F401 (re-exported)
    DEFAULT_TAU, OBJECTIVES, check_aqp_reward, normalize_aqp_params, plugin_factor,
)

B_CUTOFF = 1e-17           # B_c(p) below this is dropped from a row
MAX_ROUNDS = 40
MAX_ALMOST = 5            # consecutive reduced-accuracy rounds before giving up
SLACK = 2e-5              # relative tightening of the bias budget handed to the solver
RETRY_SLACKS = (2e-4, 2e-3, 1e-2)  # wider relative slacks tried in turn when SLACK is refused for precision
MAX_SLACK = RETRY_SLACKS[-1]
MAX_ALMOST_RETRY = 8      # consecutive reduced-accuracy rounds a retry accepts (its iterates are certified alone)
RETRY_GAP = 1e-2          # a retry's table is written when its proven optimality gap is within this
REFUSAL_BUDGET_MARGIN = 1e-6  # a refusal's lower bound holds for every table with bias <= (1 + this)·tau·E
M_REL_TOL = 2e-6           # stop when the rounded table's sup m is within this of the round's optimum
SMALL_P_GAMMA = 1e-12      # γ < 1: bias points and the scan reach down to this·/K² (the weighted bias peaks near 1/K²)
_DEBUG = bool(__import__("os").environ.get("COEFGEN_AQP_DEBUG"))
SOLVER_NAME = "clarabel (exchange method, native API)"


# --------------------------------------------------------------------------- evaluation
def _theta_grid(n: int) -> np.ndarray:
    th = (np.arange(n) + 0.5) / n * (np.pi / 2)
    return np.sin(th) ** 2


BIAS_GRID = (0.5, 40)  # initial bias points: a·K + b on the θ grid (the exchange adds the maxima)
MSE_GRID = (0.25, 24)  # initial MSE points (tau mode: a coarser start stalls the tight budgets)
MSE_GRID_MAX_MSE = (0.0625, 16)  # initial MSE points in max_mse mode (measured: 2x faster at K = 512)
MSE_GRID_COARSE_K = 512  # tau mode from this K starts from MSE_GRID_MAX_MSE too (K = 1024, tau = 100: 13.9 -> 9.6 s wall, sup m within 3e-7)


def _n_bias_grid(K: int) -> int:
    return int(BIAS_GRID[0] * K) + BIAS_GRID[1]


def _n_mse_grid(K: int, grid=None) -> int:
    a, b = MSE_GRID if grid is None else grid
    return int(a * K) + b


def _small_grid(K: int, n: int, lo: float = 1e-4) -> np.ndarray:
    return np.logspace(math.log10(lo / K**2), math.log10(1.0 / K), n)


def _snap(p: np.ndarray) -> np.ndarray:
    """Round points to 12 significant digits (grids independent of last-bit noise)."""
    p = np.asarray(p, dtype=float)
    return np.array([float(f"{x:.11e}") for x in p]) if p.size else p


def profile(t: np.ndarray, reward: Reward, p, chunk: int = 256):
    """(b(p), m(p)) for a float64 table t at float64 points p in (0, 1].

    For the exchange scan only (the written table is certified by coefgen.certify): points are
    taken in ascending order in chunks, and each chunk evaluates only the counts c whose
    probability can exceed ~1e-20 anywhere in the chunk (Bernstein's inequality for the
    binomial tail), not all K."""
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    K = len(t)
    n = K - 1
    b = np.empty_like(p)
    m = np.empty_like(p)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    logc = _log_binom(n)
    for s in range(0, len(ps), chunk):
        pp = ps[s : s + chunk]
        lo_p, hi_p = float(pp[0]), float(pp[-1])
        var = n * max(min(0.25, hi_p * (1 - lo_p)), 0.0)
        w = 10.0 * math.sqrt(var) + 35.0  # P(|c - np| >= w) < 1e-20 (Bernstein)
        j0 = max(0, int(math.floor(n * lo_p - w)))
        j1 = min(n, int(math.ceil(n * hi_p + w)))
        B = _pmf_cols(n, logc, pp, j0, j1)
        r = reward.r(pp)
        d = t[None, j0 : j1 + 1] - r[:, None]
        idx = order[s : s + chunk]
        b[idx] = pp * np.einsum("ij,ij->i", B, d)
        m[idx] = pp * np.einsum("ij,ij->i", B, d * d)
    return b, m


_LOGC: dict = {}


def _log_binom(n: int) -> np.ndarray:
    if n not in _LOGC:
        j = np.arange(n + 1)
        _LOGC[n] = gammaln(n + 1) - gammaln(j + 1) - gammaln(n - j + 1)
    return _LOGC[n]


def _pmf_cols(n: int, logc: np.ndarray, p: np.ndarray, j0: int, j1: int) -> np.ndarray:
    """B[i, j − j0] = C(n, j) p_i^j (1 − p_i)^(n − j) for j = j0..j1 (as bernstein_basis)."""
    j = np.arange(j0, j1 + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(p)[:, None]
        lq = np.log1p(-p)[:, None]
        expo = logc[None, j0 : j1 + 1] + j[None, :] * lp + (n - j)[None, :] * lq
        if j0 == 0:
            expo[:, 0] = np.where(p == 0, logc[0] + n * lq[:, 0], expo[:, 0])
        if j1 == n:
            expo[:, -1] = np.where(p == 1, logc[n] + n * lp[:, 0], expo[:, -1])
        return np.exp(expo)


def _local_max_idx(f: np.ndarray) -> np.ndarray:
    n = len(f)
    if n < 3:
        return np.arange(n)
    left = np.concatenate([[True], f[1:] >= f[:-1]])
    right = np.concatenate([f[:-1] >= f[1:], [True]])
    return np.nonzero(left & right)[0]


def _golden_refine(fun, lo, hi, iters=40):
    """Vectorised golden-section maximisation of fun on brackets [lo, hi]; returns (x, f(x))."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo.copy(), hi.copy()
    c = b - g * (b - a)
    d = a + g * (b - a)
    fc, fd = fun(c), fun(d)
    for _ in range(iters):
        keep_left = fc >= fd  # max in [a, d]
        b = np.where(keep_left, d, b)
        a = np.where(keep_left, a, c)
        new_c = b - g * (b - a)
        new_d = a + g * (b - a)
        # reuse the surviving point
        c_next = np.where(keep_left, new_c, d)
        d_next = np.where(keep_left, c, new_d)
        fc_known = np.where(keep_left, np.nan, fd)
        fd_known = np.where(keep_left, fc, np.nan)
        need_c = keep_left
        need_d = ~keep_left
        fc = fc_known
        fd = fd_known
        if need_c.any():
            fc[need_c] = fun(c_next[need_c]) if need_c.all() else _sub(fun, c_next, need_c)
        if need_d.any():
            fd[need_d] = fun(d_next[need_d]) if need_d.all() else _sub(fun, d_next, need_d)
        c, d = c_next, d_next
    x = np.where(fc >= fd, c, d)
    return x, np.maximum(fc, fd)


def _sub(fun, x, mask):
    return fun(x[mask])


class _Scan:
    """Dense scan + refined local maxima of |b_γ| and m for one table, b_γ(p) = p^γ·(T(p) − r(p))
    (γ = 1: the weighted bias b of DESIGN §4)."""

    def __init__(self, K: int, gamma: float = 1.0):
        self.K = K
        self.gamma = gamma
        n = 12 * K + 1000
        lo = 1e-6 if gamma == 1 else SMALL_P_GAMMA
        self.p = np.unique(np.concatenate([_theta_grid(n), _small_grid(K, 60 if gamma == 1 else 200, lo=lo), [1.0]]))

    def run(self, t, reward, *, want_m=True):
        p = self.p
        b, m = profile(t, reward, p)
        if self.gamma != 1:
            b = b * p ** (self.gamma - 1)
        out = {}
        for name, f in (("b", np.abs(b)), ("m", m)) if want_m else (("b", np.abs(b)),):
            idx = _local_max_idx(f)
            lo = p[np.maximum(idx - 1, 0)]
            hi = p[np.minimum(idx + 1, len(p) - 1)]
            at_end = idx == len(p) - 1  # p = 1 is an endpoint: keep it as is
            k = 0 if name == "b" else 1
            g1 = self.gamma - 1
            fun = (lambda x: np.abs(profile(t, reward, x)[0]) * x**g1) if k == 0 else (lambda x: profile(t, reward, x)[1])
            x = p[idx].copy()
            fx = f[idx].copy()
            inner = ~at_end & (hi > lo)
            if inner.any():
                xr, fr = _golden_refine(fun, lo[inner], hi[inner])
                better = fr > fx[inner]
                x[inner] = np.where(better, xr, x[inner])
                fx[inner] = np.where(better, fr, fx[inner])
            out[name] = (x, fx)
        return out


# --------------------------------------------------------------------------- mean objective
def _beta_moments(K: int, s: float) -> np.ndarray:
    """M_c(s) = ∫₀¹ p^(1+s) B_c(p) dp = C(K−1, c−1)·B(c+1+s, K−c+1), c = 1..K."""
    c = np.arange(1, K + 1, dtype=float)
    logC = gammaln(K) - gammaln(c) - gammaln(K - c + 1)
    return np.exp(logC + gammaln(c + 1 + s) + gammaln(K - c + 1) - gammaln(K + 2 + s))


def mean_weights(reward: Reward, K: int):
    """(w, g, h): ∫₀¹ m(p) dp = Σ_c w_c t_c² − 2 g_c t_c + h_c (exact closed forms)."""
    c = np.arange(1, K + 1, dtype=float)
    w = c / (K * (K + 1.0))
    if isinstance(reward, KL):
        d = digamma(c + 1) - digamma(K + 2)
        g = w * d
        h = w * (d * d + polygamma(1, c + 1) - polygamma(1, K + 2))
        return w, g, h
    if isinstance(reward, Alpha):
        a = float(reward.a)
        M0, M1, M2 = _beta_moments(K, 0.0), _beta_moments(K, a - 1), _beta_moments(K, 2 * a - 2)
        g = (M1 - M0) / (a - 1)
        h = (M2 - 2 * M1 + M0) / (a - 1) ** 2
        return w, g, h
    if isinstance(reward, Poly):
        co = [float(x) for x in reward.coefficients]
        Ms = {}

        def M(j):
            if j not in Ms:
                Ms[j] = _beta_moments(K, float(j))
            return Ms[j]

        g = sum(a * M(j) for j, a in enumerate(co) if a)
        h = sum(a * b * M(i + j) for i, a in enumerate(co) for j, b in enumerate(co) if a and b)
        return w, g * np.ones(K), h * np.ones(K)
    raise InputError(f"aqp: objective 'mean' has no closed form for reward {reward.name!r}")  # pragma: no cover


def mean_mse(t, reward: Reward) -> float:
    """∫₀¹ m(p) dp of the table t (closed form)."""
    t = np.asarray(t, dtype=float)
    w, g, h = mean_weights(reward, len(t))
    return math.fsum(np.concatenate([w * t * t, -2 * g * t, h]))


# --------------------------------------------------------------------------- separable dual bound
DUAL_EPS = 1e-9  # least relative error allowed for each float64 sum of separable_dual_bound


def _dual_eps(K: int, p) -> float:
    """Relative error allowance for sums of μ·p·B_c(p)·r(p)^k over the points p: B_c(p) =
    exp(log C + j·log p + (n−j)·log1p(−p)) has relative error ≤ 8u(A + 1), A the sum of the
    magnitudes in the exponent (as in coefgen.certify, libm faithful), a sum of N terms adds
    (N + 3)u; the allowance is 64 times their sum, and at least DUAL_EPS."""
    u = 2.0**-53
    p = np.asarray(p, dtype=float)
    p = p[(p > 0) & (p < 1)]
    if not len(p):
        return DUAL_EPS
    n = K - 1
    logc_max = float(np.max(np.abs(_log_binom(n)))) if n > 0 else 0.0
    A = logc_max + n * max(abs(math.log(float(p.min()))), abs(math.log1p(-float(p.max()))))
    return max(DUAL_EPS, 64 * (8 * u * (A + 1) + (len(p) + K + 3) * u))


def separable_dual_bound(reward: Reward, K: int, beta: float, mu, p_m, lam, p_b, nu=None, *, mean=None) -> float:
    """A proven lower bound on the semi-infinite AQP optimum at the bias budget ``beta``, from any
    multipliers: μ ≥ 0 on MSE points p_m (mode 'worst'; ``mean`` = mean_weights for the mean
    objective instead), λ (any sign) on bias points p_b, ν ≥ 0 on t_c ≤ t_(c+1) (monotone).

    Weak duality: for every table t with sup_p |b(p)| ≤ β (and monotone, with ν),

        sup_p m(p) · Σμ ≥ Σ_p μ_p m_p(t) + Σ_q λ_q b_q(t) − β Σ|λ_q| + Σ_c ν_c (t_c − t_(c+1))
                       = Σ_c (a_c t_c² − 2 f_c t_c + h_c + l_c t_c) − Σ_q λ_q q r(q) − β Σ|λ_q|

    with a_c = Σ μ_p p B_c(p), f_c = Σ μ_p p B_c(p) r(p), h_c = Σ μ_p p B_c(p) r(p)²,
    l_c = Σ λ_q q B_c(q) + ν_c − ν_(c−1). The right-hand side separates over the coordinates t_c,
    and each one's minimum is h_c − (l_c − 2 f_c)²/(4 a_c): the dual function in closed form.
    Only points and multipliers enter, never the cone program (its cut-off rows, scaling or
    tightened budget): the bound holds for the problem at β over all p ∈ [0, 1]. Each float64
    sum is widened by a relative allowance (_dual_eps, ≥ DUAL_EPS) of the sum of its terms'
    magnitudes, far above float64's rounding and the error of B_c(p), in the direction that lowers
    the bound (h_c and a_c down, |l_c − 2 f_c| up), and the total likewise. Returns max(bound, 0)
    (0 when the multipliers prove nothing)."""
    lam = np.asarray(lam, dtype=float)
    p_b = np.asarray(p_b, dtype=float)
    sel = (lam != 0) & (p_b > 0)
    lam, p_b = lam[sel], p_b[sel]
    if mean is not None:
        a, f, h = (np.asarray(v, dtype=float) for v in mean)
        f_abs = np.abs(f)
        weight = 1.0
    else:
        mu = np.maximum(np.asarray(mu, dtype=float), 0.0)
        p_m = np.asarray(p_m, dtype=float)
        sel = (mu > 0) & (p_m > 0)
        mu, p_m = mu[sel], p_m[sel]
        if not len(mu):
            return 0.0
        weight = math.fsum(mu) * (1 + 1e-12)  # sup m ≥ (that sum)/Σμ
        Bm = count_pmf(K, p_m)
        rm = reward.r(p_m)
        wm = mu * p_m
        a = wm @ Bm
        f = (wm * rm) @ Bm
        f_abs = (wm * np.abs(rm)) @ Bm
        h = (wm * rm * rm) @ Bm
    eps = _dual_eps(K, np.concatenate([p_b, p_m if mean is None else []]))
    if len(lam):
        Bb = count_pmf(K, p_b)
        l = (lam * p_b) @ Bb
        l_abs = (np.abs(lam) * p_b) @ Bb
        rb = reward.r(p_b)
        lin = lam * p_b * rb
    else:
        l = l_abs = np.zeros(K)
        lin = np.zeros(0)
    if nu is not None:
        nu = np.maximum(np.asarray(nu, dtype=float), 0.0)
        dn = np.concatenate([nu, [0.0]]) - np.concatenate([[0.0], nu])
        l = l + dn
        l_abs = l_abs + np.concatenate([nu, [0.0]]) + np.concatenate([[0.0], nu])
    a_lo = a * (1 - eps)
    h_lo = h - eps * np.abs(h)
    # (+ an absolute 1e-300 per unit weight: terms that underflowed to 0 in B_c(p))
    d_hi = np.abs(l - 2 * f) + eps * (l_abs + 2 * f_abs) + 1e-300 * (
        float(np.sum(np.abs(lam) * p_b)) + 2 * (float(np.sum(mu * p_m * np.abs(reward.r(p_m)))) if mean is None else 0.0)
        + (2 * float(np.sum(nu)) if nu is not None else 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        X = np.where(d_hi > 0, d_hi * d_hi / (4 * a_lo), 0.0)
    if not np.all(np.isfinite(X)) or np.any((a_lo <= 0) & (d_hi > 0)):
        return 0.0
    c_lin = -lin
    c_abs = beta * np.abs(lam)
    total = math.fsum(np.concatenate([h_lo, -X, c_lin, -c_abs]))
    # the inputs' errors are in h_lo, a_lo, d_hi; what is left is the rounding of X, of the
    # products in c_lin and c_abs (a few u each, log faithful) and of fsum (exact, then rounded)
    margin = 64 * 2.0**-53 * math.fsum(np.concatenate([np.abs(h_lo), X, np.abs(c_lin), c_abs]))
    g = total - margin
    if not g > 0:
        return 0.0
    return g / weight


def best_dual_bound(reward: Reward, K: int, beta: float, mult, *, mean=None) -> float:
    """separable_dual_bound for the solver's multipliers ``mult`` (``_Program.multipliers``),
    and for them with λ and ν scaled by the best factor s ≥ 0 (the bound is a concave quadratic
    in s; every s gives a valid bound): the larger of the two."""
    if mult is None:
        return 0.0
    mu, p_b, lam, nu = mult
    p_m = None
    if mean is None:
        mu, p_m = mu
    out = separable_dual_bound(reward, K, beta, mu, p_m, lam, p_b, nu, mean=mean)
    # best scale s of (λ, ν): g(s) = Σ_c h_c − (s l_c − 2 f_c)²/(4 a_c) − s·C
    try:
        if mean is None:
            Bm = count_pmf(K, p_m)
            wm = np.maximum(mu, 0.0) * p_m
            a, f = wm @ Bm, (wm * reward.r(p_m)) @ Bm
        else:
            a, f = mean[0], mean[1]
        l = (lam * p_b) @ count_pmf(K, p_b) if len(lam) else np.zeros(K)
        if nu is not None:
            l = l + np.concatenate([nu, [0.0]]) - np.concatenate([[0.0], nu])
        C = float(np.sum(lam * p_b * reward.r(p_b)) + beta * np.sum(np.abs(lam)))
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (float(np.sum(l * f / a)) - C) / float(np.sum(l * l / (2 * a)))
        if math.isfinite(s) and s > 0 and abs(s - 1) > 1e-12:
            out = max(out, separable_dual_bound(reward, K, beta, mu, p_m, s * lam, p_b,
                                                None if nu is None else s * nu, mean=mean))
    except (FloatingPointError, ZeroDivisionError, ValueError):  # pragma: no cover
        pass
    return out


# --------------------------------------------------------------------------- cone program
def _rows(K, p, reward):
    """Truncated sparse rows: B (csr, entries ≥ cutoff), r(p)."""
    B = count_pmf(K, p)
    B[B < B_CUTOFF] = 0.0
    return sp.csr_matrix(B), reward.r(p)


def _settings(tol):
    import clarabel

    s = clarabel.DefaultSettings()
    s.verbose = False
    s.max_iter = 400
    s.tol_gap_abs = tol
    s.tol_gap_rel = tol
    s.tol_feas = tol
    s.tol_ktratio = 1e-7
    s.max_threads = 1
    s.direct_solve_method = "qdldl"
    return s


class _Program:
    """One round's cone program in the scaled correction δ = (t − t_ref)/σ.

    mode 'worst': x = (δ, u[, z]), min u,  bias rows, SOC rows ‖·‖ ≤ u.
    mode 'mean' : x = δ[, z],      min ½δ'Pδ + q'δ, bias rows.
    mode 'bias' : x = (δ, y[, z]), min y,  |b| ≤ β0·y rows, SOC rows ‖·‖ ≤ √V.
    (z: one auxiliary per bias point in the split form, ``split=True``.)

    σ is the size of the previous round's correction (clipped to [β, 1]): the solver's
    absolute tolerances then act on a quantity that is O(1) in every round, so late rounds
    resolve the table to far below the bias budget. Bias rows are expressed in units of the
    budget; rows too small to matter (tiny p) are scaled up to unit size, and dropped when
    their right-hand side then exceeds 1e6 (they cannot become active).

    ``fallback``: the _Fallback state of the solve_aqp call (None: a split program that does not
    reach Solved is always solved again in the non-split form)."""

    def __init__(self, mode, reward, K, t_ref, p_b, p_m, *, sigma=1.0, beta=None, beta_solve=None, V=None,
                 V_solve=None, beta0=None, mean=None, gamma=1.0, monotone=False, split=True, fallback=None):
        import clarabel

        self._args = (mode, reward, K, t_ref, p_b, p_m)
        self._kw = dict(sigma=sigma, beta=beta, beta_solve=beta_solve, V=V, V_solve=V_solve, beta0=beta0,
                        mean=mean, gamma=gamma, monotone=monotone)
        self.split = split
        self._fallback = fallback
        self.mode, self.K, self.sigma = mode, K, sigma
        nx = K + (0 if mode == "mean" else 1)
        blocks_A, blocks_b, blocks_b_loose, cones = [], [], [], []

        Bb, rb = _rows(K, p_b, reward)
        w_b = p_b if gamma == 1 else p_b**gamma
        Dp = sp.diags(w_b)
        e = w_b * (Bb @ t_ref - rb)  # current (weighted) bias at the bias points
        unit = beta if mode in ("worst", "mean") else beta0
        a = (Dp @ Bb) * (sigma / unit)
        if not split:  # two linear rows per point (the fallback formulation)
            if mode in ("worst", "mean"):
                zero = sp.csr_matrix((len(p_b), nx - K))
                Ab = sp.vstack([sp.hstack([a, zero]), sp.hstack([-a, zero])]).tocsr()
                ratio = beta_solve / beta
                rhs = np.concatenate([ratio - e / beta, ratio + e / beta])
                rhs_loose = np.concatenate([1 - e / beta, 1 + e / beta])
            else:
                col = sp.csr_matrix(-np.ones((len(p_b), 1)))
                Ab = sp.vstack([sp.hstack([a, col]), sp.hstack([-a, col])]).tocsr()
                rhs = rhs_loose = np.concatenate([-e / beta0, e / beta0])
            rmax = np.asarray(abs(Ab[:, :K]).max(axis=1).todense()).ravel()
            scale = np.where(rmax > 0, 1.0 / np.maximum(np.minimum(rmax, 1.0), 1e-300), 1.0)
            if mode == "bias":
                keep = np.ones(len(rhs), bool)
            else:
                keep = (rmax > 0) & (np.abs(rhs) * scale <= 1e6)
            Ab = (sp.diags(scale[keep]) @ Ab[keep]).tocsr()
            self._bias_layout = ("rows", p_b, np.where(keep, scale, 0.0), keep)
            blocks_A.append(Ab)
            blocks_b.append(rhs[keep] * scale[keep])
            blocks_b_loose.append(rhs_loose[keep] * scale[keep])
            cones.append(clarabel.NonnegativeConeT(Ab.shape[0]))
        else:
            # Split form: z = S·a·δ (one equality row per point, the only rows with the Bernstein
            # window's nonzeros), then ±z against the budget (two rows of one or two nonzeros).
            # Half the nonzeros of the two full linear rows, so a cheaper KKT factor, and the
            # same LP geometry (2-dim second-order cones stall the interior-point method).
            n = len(p_b)
            rmax = np.asarray(abs(a).max(axis=1).todense()).ravel()
            scale = np.where(rmax > 0, 1.0 / np.maximum(np.minimum(rmax, 1.0), 1e-300), 1.0)
            if mode in ("worst", "mean"):
                ratio = beta_solve / beta
                keep = (rmax > 0) & (np.minimum(np.abs(ratio - e / beta), np.abs(ratio + e / beta)) * scale <= 1e6)
            else:
                keep = np.ones(n, bool)
            idx = np.nonzero(keep)[0]
            nz = len(idx)
            S = scale[idx]
            I = sp.identity(nz, format="csr")
            Aeq = sp.hstack([sp.diags(S) @ a[idx], sp.csr_matrix((nz, nx - K)), -I]).tocsr()
            if mode in ("worst", "mean"):
                Alp = sp.vstack([sp.hstack([sp.csr_matrix((nz, nx)), I]), sp.hstack([sp.csr_matrix((nz, nx)), -I])])
                blp = np.concatenate([S * (ratio - e[idx] / beta), S * (ratio + e[idx] / beta)])
                blp_loose = np.concatenate([S * (1 - e[idx] / beta), S * (1 + e[idx] / beta)])
            else:
                ycol = sp.csr_matrix((-S, (np.arange(nz), np.full(nz, K))), shape=(nz, nx))
                Alp = sp.vstack([sp.hstack([ycol, I]), sp.hstack([ycol, -I])])
                blp = blp_loose = np.concatenate([-S * e[idx] / beta0, S * e[idx] / beta0])
            self._bias_layout = ("split", p_b[idx], S, nz)
            split_A = sp.vstack([Aeq, Alp]).tocsr()
            split_b = np.concatenate([np.zeros(nz), blp])
            split_b_loose = np.concatenate([np.zeros(nz), blp_loose])
            split_cones = [clarabel.ZeroConeT(nz), clarabel.NonnegativeConeT(2 * nz)]

        if mode in ("worst", "bias") and len(p_m):
            Bm, rm = _rows(K, p_m, reward)
            Bm = Bm.tocoo()
            order = np.lexsort((Bm.col, Bm.row))
            ri, ci, vals = Bm.row[order], Bm.col[order], Bm.data[order]
            counts = np.bincount(ri, minlength=len(p_m))
            starts = np.concatenate([[0], np.cumsum(counts + 1)[:-1]])  # head row of each cone
            rank = np.arange(len(ri)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[ri]
            rows_body = starts[ri] + 1 + rank
            sq = np.sqrt(p_m[ri] * vals)
            nrow = int(np.sum(counts + 1))
            if mode == "worst":
                A_rows = np.concatenate([starts, rows_body])
                A_cols = np.concatenate([np.full(len(starts), K), ci])
                A_vals = np.concatenate([-np.ones(len(starts)), -sq * sigma])
            else:
                A_rows, A_cols, A_vals = rows_body, ci, -sq * sigma
            Am = sp.csr_matrix((A_vals, (A_rows, A_cols)), shape=(nrow, nx))
            self._soc_layout = (sum(blk.shape[0] for blk in blocks_A), starts, nrow)
            bm = np.zeros(nrow)
            bm[rows_body] = sq * (t_ref[ci] - rm[ri])
            bm_loose = bm.copy()
            if mode == "bias":
                bm[starts] = math.sqrt(V_solve)
                bm_loose[starts] = math.sqrt(V)
            blocks_A.append(Am)
            blocks_b.append(bm)
            blocks_b_loose.append(bm_loose)
            cones.extend(clarabel.SecondOrderConeT(int(c) + 1) for c in counts)

        self._mono_row = sum(blk.shape[0] for blk in blocks_A) if monotone else None
        if monotone:
            # t_c − t_{c+1} ≤ 0:  σ(δ_c − δ_{c+1}) + s = t_ref_{c+1} − t_ref_c, s ≥ 0
            D = sp.diags([np.ones(K - 1), -np.ones(K - 1)], [0, 1], shape=(K - 1, K)) * sigma
            Amono = sp.hstack([D, sp.csr_matrix((K - 1, nx - K))]).tocsr()
            dt = np.diff(t_ref)
            blocks_A.append(Amono)
            blocks_b.append(dt)
            blocks_b_loose.append(dt)
            cones.append(clarabel.NonnegativeConeT(K - 1))

        self.nz = nz = 0 if not split else split_A.shape[1] - nx
        self._row_shift = split_A.shape[0] if nz else 0  # rows of the split block, ahead of the others
        A = sp.vstack(blocks_A).tocsr() if blocks_A else sp.csr_matrix((0, nx))
        if nz:
            A = sp.vstack([split_A, sp.hstack([A, sp.csr_matrix((A.shape[0], nz))])])
            blocks_b.insert(0, split_b)
            blocks_b_loose.insert(0, split_b_loose)
            cones = split_cones + cones
        self.A = A.tocsc()
        self.b = np.concatenate(blocks_b)
        self.b_loose = np.concatenate(blocks_b_loose)
        self.cones = cones
        q = np.zeros(nx + nz)
        if mode == "mean":
            w, g, h = mean
            self.P = sp.diags(np.concatenate([2 * w * sigma * sigma, np.zeros(nz)])).tocsc()
            q[:K] = sigma * (2 * w * t_ref - 2 * g)
            self.const = math.fsum(np.concatenate([w * t_ref * t_ref, -2 * g * t_ref, h]))
        else:
            self.P = sp.csc_matrix((nx + nz, nx + nz))
            q[K] = 1.0
            self.const = 0.0
        self.q = q
        self.p_m = p_m
        self.beta = beta
        self.dual_source = None  # (program, x, y) of the last solved or almost-solved cone program
        self.other_duals = []  # (program, x, y) of every other solve that stopped with finite iterates

    def candidate_multipliers(self) -> list:
        """multipliers() of every solve of this round (solved, reduced accuracy, failed), each once
        (a reduced-accuracy dual_source is also in other_duals; kl K = 2048, tau = 100: the
        refusal's bound over the last 4 rounds took 0.84 s instead of 1.76 s)."""
        out = []
        seen = []
        for src in ([self.dual_source] if self.dual_source is not None else []) + self.other_duals:
            if any(src[0] is s[0] and np.array_equal(src[1], s[1]) and np.array_equal(src[2], s[2]) for s in seen):
                continue
            seen.append(src)
            try:
                m = self.multipliers(src)
            except (IndexError, ValueError):  # pragma: no cover (a layout the bound cannot use)
                m = None
            if m is not None:
                out.append(m)
        return out

    def multipliers(self, source=None):
        """The last solve's Lagrange multipliers in the units of the separable dual bound
        (``separable_dual_bound``): (μ over p_m, bias points, λ, ν) for modes 'worst' and
        'mean', or None. Any multipliers give a valid bound; these are the solver's (possibly
        reduced-accuracy) ones, converted from the scaled cone program."""
        source = self.dual_source if source is None else source
        if source is None or self.mode not in ("worst", "mean"):
            return None
        prog, x, y = source
        beta = prog.beta
        lay = prog._bias_layout
        if lay[0] == "split":
            _, pts, S, nz = lay
            lam = (y[nz : 2 * nz] - y[2 * nz : 3 * nz]) * S / beta
        else:
            _, pts, scale, keep = lay
            n = len(pts)
            yy = np.zeros(2 * n)
            yy[keep] = y[prog._row_shift : prog._row_shift + int(keep.sum())]
            lam = (yy[:n] * scale[:n] - yy[n:] * scale[n:]) / beta
        nu = None
        if prog._mono_row is not None:
            r0 = prog._row_shift + prog._mono_row
            nu = np.maximum(y[r0 : r0 + prog.K - 1], 0.0)
        if prog.mode == "worst":
            off, starts, _ = prog._soc_layout
            mu = np.maximum(y[prog._row_shift + off + starts], 0.0)
            u = float(x[prog.K])
            lam = 2 * u * lam  # the cone bounds sqrt(m) <= u; the bound is on m = u^2
            nu = None if nu is None else 2 * u * nu
            return (mu, prog.p_m), pts, lam, nu
        return None, pts, lam, nu

    def table(self, x, t_ref):
        return t_ref + self.sigma * x[: self.K]

    def solve(self):
        import clarabel

        last = almost = None
        # rows are pre-scaled here, so Clarabel's equilibration is not needed; a smaller static
        # regularisation avoids the stalls ("AlmostSolved") seen with the defaults.
        # Where the split form does not reach full accuracy, the round is solved again with two
        # full linear rows per bias point (the formulation of coefgen <= 0.2).
        variants = [(1e-8, {"static_regularization_constant": 1e-10})]
        if not self.split:
            variants.append((1e-9, {"equilibrate_enable": False}))
        for tol, extra in variants:
            st = _settings(tol)
            for k, v in extra.items():
                setattr(st, k, v)
            solver = clarabel.DefaultSolver(self.P, self.q, self.A, self.b, self.cones, st)
            sol = solver.solve()
            if _DEBUG:
                print(f"  clarabel split={self.split} tol={tol} {extra}: {sol.status} it={sol.iterations} "
                      f"t={sol.solve_time:.2f}s rows={self.A.shape[0]}")
            last = sol
            if sol.status != clarabel.SolverStatus.Solved:
                xs, zs = np.array(sol.x), np.array(sol.z)
                if len(zs) == self.A.shape[0] and np.all(np.isfinite(xs)) and np.all(np.isfinite(zs)):
                    self.other_duals.append((self, xs, zs))  # any multipliers give a valid dual bound
            if sol.status == clarabel.SolverStatus.Solved:
                x = np.array(sol.x)
                z = np.array(sol.z)
                self.dual_source = (self, x, z)
                # dual objective with the untightened right-hand side: a lower bound of the loose problem
                quad = 0.5 * x @ (self.P @ x)
                dual_loose = -quad - self.b_loose @ z + self.const
                return "solved", x, float(sol.obj_val) + self.const, dual_loose, int(sol.iterations)
            if sol.status in (clarabel.SolverStatus.PrimalInfeasible, clarabel.SolverStatus.AlmostPrimalInfeasible):
                return "infeasible", None, None, None, int(sol.iterations)
            if sol.status == clarabel.SolverStatus.AlmostSolved and almost is None:
                almost = sol
        state = self._fallback
        # no fallback where it is futile (_Fallback) or the split iterate is nearly solved (_near_solved)
        skip = almost is not None and state is not None and (state.futile or _near_solved(almost, variants[0][0]))
        if self.split and not skip:
            fallback = _Program(*self._args, **self._kw, split=False)
            out = fallback.solve()
            self.dual_source = fallback.dual_source
            self.other_duals += fallback.other_duals
            if almost is not None and out[0] != "solved" and state is not None:
                state.futile = True
            return out
        if self.split and _DEBUG:
            print(f"  non-split fallback skipped ({'futile in an earlier round' if state.futile else 'nearly solved'})")
        if almost is not None:
            self.dual_source = (self, np.array(almost.x), np.array(almost.z))
            # reduced accuracy: usable as a cutting-plane iterate (the table is checked
            # independently); the final round of a first attempt needs a solved program (its
            # dual gives objective_lower), a retry's takes the separable dual bound instead.
            # A split program gets here only when its fallback is skipped (futile, or nearly solved).
            return "almost", np.array(almost.x), float(almost.obj_val) + self.const, None, int(almost.iterations)
        return f"failed ({last.status})", None, None, None, int(last.iterations)


NEAR_SOLVED = 100  # an AlmostSolved split iterate within this many times the tolerances skips the fallback


def _near_solved(sol, tol: float) -> bool:
    """Clarabel stopped short of ``tol`` but within NEAR_SOLVED·tol in primal and dual residuals and
    relative duality gap: a stall at the float64 floor, not a formulation the fallback would fix."""
    lim = NEAR_SOLVED * tol
    gap = abs(float(sol.obj_val) - float(sol.obj_val_dual)) / max(1.0, abs(float(sol.obj_val)))
    return bool(float(sol.r_prim) <= lim and float(sol.r_dual) <= lim and gap <= lim)


class _Fallback:
    """State of one solve_aqp call, shared by all its rounds and attempts: ``futile`` once a split
    program ended AlmostSolved and its non-split fallback did not reach Solved either; later split
    programs that end AlmostSolved then return their own reduced-accuracy iterate without the
    fallback, as does one whose iterate is nearly solved (_near_solved), whatever the state.
    kl K = 2048, tau = 100: the first round's program took 15.4 s, 12.3 s of it in the fallback,
    which ended AlmostSolved; each later one 2.5-2.9 s without it, 14.4-16.7 s with it."""

    __slots__ = ("futile",)

    def __init__(self):
        self.futile = False


class _Warm:
    """Exchange state handed from an attempt refused for reduced accuracy to the next (wider slack):
    the grids p_b, p_m, the last iterate t (rounded to the refused attempt's quantum; the next
    attempt re-rounds it to its own) and the scale sigma of the next correction."""

    __slots__ = ("p_b", "p_m", "t", "sigma")

    def __init__(self, p_b, p_m, t, sigma):
        self.p_b, self.p_m, self.t, self.sigma = p_b, p_m, t, sigma


def _next_sigma(t_new, t_old, floor):
    d = float(np.max(np.abs(np.asarray(t_new) - np.asarray(t_old))))
    return float(min(1.0, max(d, floor)))


# --------------------------------------------------------------------------- helpers
def quantum_for(budget: float) -> float:
    """Rounding quantum: the power of two at most budget/4096 (bias moves by ≤ budget/8192)."""
    return 2.0 ** math.floor(math.log2(budget / 4096.0))


def round_table(t, quantum: float) -> np.ndarray:
    """Round every entry to a multiple of ``quantum`` (a power of two: exact in float64).

    The shipped table is this rounded one: solver noise across machines (far below the
    quantum) then almost never changes a byte, and the bias moves by at most quantum/2·p."""
    t = np.asarray(t, dtype=float)
    return np.round(t / quantum) * quantum


def exact_strings(values, digits: int = 30) -> list[str]:
    """The float64 values written exactly in decimal (they are the table), padded with
    trailing zeros to at least ``digits`` significant digits."""
    out = []
    for v in values:
        s = format(Decimal(float(v)), "f")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        if s in ("", "-", "-0"):
            s = "0"
        sig = len(s.lstrip("-").replace(".", "").lstrip("0"))
        if 0 < sig < digits or s == "0":
            pad = digits - sig if s != "0" else digits - 1
            s = s + ("" if "." in s else ".") + "0" * pad
        out.append(s)
    return out


def _initial_table(reward: Reward, K: int) -> np.ndarray:
    c = np.arange(1, K + 1, dtype=float)
    if isinstance(reward, KL):
        return digamma(c) - digamma(K)  # bias O(1/K), a good start
    return reward.r(c / K)


def _level_value(reward, K, level):
    if level is None:
        from .minimax import minimax_level

        level = minimax_level(reward, K).upper
    if hasattr(level, "upper"):
        level = level.upper
    return float(level)


def _certify(values, reward):
    from ..certify import certify

    return certify(values, reward)


def _dedupe_add(grid: np.ndarray, new: np.ndarray) -> np.ndarray:
    new = _snap(new)
    new = new[(new > 0) & (new <= 1)]
    if not len(new):
        return grid
    allp = np.unique(np.concatenate([grid, new]))
    return allp


# --------------------------------------------------------------------------- driver
def solve_aqp(reward: Reward, K: int, *, tau=DEFAULT_TAU, objective="worst", max_mse=None, level=None,
              gamma=1, monotone=False) -> Solution:
    """The AQP table (see module docstring). Returns a Solution with certified diagnostics."""
    prm = normalize_aqp_params({"tau": tau, "objective": objective, "max_mse": max_mse, "gamma": gamma,
                                "monotone": monotone})
    tau, objective, max_mse = prm["tau"], prm["objective"], prm["max_mse"]
    gamma, monotone = prm["gamma"], prm["monotone"]
    check_aqp_reward(reward, prm)
    if reward.is_polynomial and reward.degree <= K - 1 and max_mse is None:
        # E*_K = 0: the only table within any budget τ·0 is the exact one.
        from .exact import solve_exact

        sol = solve_exact(reward, K)
        sol.params = {"note": "exact table (E*_K = 0: the bias budget forces the unbiased table)"}
        return sol
    t0 = time.perf_counter()
    if max_mse is not None:
        return _solve_max_mse(reward, K, max_mse, t0, gamma=gamma, monotone=monotone)
    E = _level_value(reward, K, level)
    beta = tau * E
    slack = min(SLACK * beta, 0.5 * (beta - E))
    if not slack > 0:
        raise CheckError(
            f"aqp {reward.name} K={K}: tau = {tau} leaves no room above the minimax level E*_K = {E:.6g}; "
            "double precision cannot deliver a table with certified bias within tau*E*_K (use tau > 1)"
        )
    mode = "worst" if objective == "worst" else "mean"
    mean = mean_weights(reward, K) if mode == "mean" else None
    # the first attempt is the solve every table written so far came from (same tables, byte for
    # byte); a refusal for want of precision is retried with a wider slack (a coarser rounding
    # quantum, a table whose bias may sit further below the budget), at most len(RETRY_SLACKS) times
    slacks = [slack]
    for rel in RETRY_SLACKS:
        s = min(rel * beta, 0.5 * (beta - E))
        if s > slacks[-1] * 1.5:
            slacks.append(s)
    proven = [0.0]
    refusals = []
    fallback = _Fallback()  # one for all attempts: a futile non-split fallback is not tried again
    warm = None
    for k, s in enumerate(slacks):
        try:
            return _solve_tau(reward, K, tau, E, beta, s, mode, mean, monotone, proven, retry=k > 0,
                              fallback=fallback, warm=warm)
        except _Refused as e:
            refusals.append(e)
            if not e.retry:
                break
            # refused for reduced accuracy only: the next attempt goes on from this one's exchange
            # state (e.warm); any other refusal: the next attempt starts afresh (e.warm is None).
            # kl K = 2048, tau = 100: the warm retry accepts its first round (7.1 s with its
            # certification); from scratch it took 5 rounds (87.3 s, with the fallbacks)
            warm = e.warm
    raise CheckError(_refusal_message(reward, K, tau, E, beta, proven[0], refusals, slacks, mode))


class _Refused(Exception):
    """One attempt (one slack) ended without a certified table: ``reason`` (a clause for the
    message), ``retry``: whether a wider slack may help, ``warm``: the _Warm state the next attempt
    starts from (a refusal for reduced accuracy), or None (it starts afresh)."""

    def __init__(self, reason: str, retry: bool = True, warm=None):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.warm = warm


def _refusal_message(reward, K, tau, E, beta, lower, refusals, slacks, mode) -> str:
    """One line: the proven lower bound on the objective (if any), the plug-in's value beside it,
    why no double-precision table was certified, and the slacks tried."""
    head = f"aqp {reward.name} K={K}: tau = {tau}"
    last = refusals[-1]
    if not last.retry:
        return f"{head}: {last.reason}"
    what = "sup m" if mode == "worst" else "the integral of m"
    tried = len(refusals)
    widest = slacks[tried - 1] / beta
    if lower > 0:
        ref = ""
        if mode == "worst":
            try:
                ref = f"; the plug-in table's sup m is {plugin_sup_mse(reward, K):.3g}"
            except Exception:  # pragma: no cover (a diagnostic only)
                ref = ""
        claim = (f"every table with bias within tau*E*_K = {beta:.4g} has {what} >= {lower:.3g} "
                 f"(proven by a dual bound{ref})")
    else:
        claim = (f"a table with bias within tau*E*_K = {beta:.4g} exists (tau > 1: the minimax table has bias "
                 f"E*_K = {E:.4g}), but no lower bound on its {what} was proven before the solver stopped")
    return (f"{head}: {claim}; double precision could not deliver one: {last.reason} "
            f"({tried} attempt{'s' if tried > 1 else ''}, the last with a bias slack of {widest:.2g} of the budget); "
            "use a larger tau")


def _solve_tau(reward, K, tau, E, beta, slack, mode, mean, monotone, proven, *, retry, fallback=None, warm=None):
    """One attempt of the tau mode at one slack; raises _Refused (after adding the best dual bound
    of its last rounds to ``proven``) or returns the Solution. ``fallback``: the call's _Fallback;
    ``warm``: the _Warm state of a previous attempt to start from (None: from scratch)."""
    recent = []  # multipliers of the last rounds (for the proven lower bound of a refusal)
    try:
        return _solve_tau_rounds(reward, K, tau, E, beta, slack, mode, mean, monotone, recent, retry=retry,
                                 fallback=fallback, warm=warm)
    except _Refused:
        # the claim is for every table within tau*E*_K: E may be a float64 estimate just below
        # E*_K (the compiler's, ~1e-9 relative), so the bound is taken at a budget 1e-6 above
        claim = beta * (1 + REFUSAL_BUDGET_MARGIN)
        for mult in (m for ms in recent[-4:] for m in ms):
            try:
                proven[0] = max(proven[0], best_dual_bound(reward, K, claim, mult, mean=mean))
            except Exception:  # pragma: no cover (a diagnostic only: no bound)
                pass
        raise


def _solve_tau_rounds(reward, K, tau, E, beta, slack, mode, mean, monotone, recent, *, retry, fallback=None,
                      warm=None):
    beta_s = beta - slack
    accept = beta - 0.5 * slack
    q = quantum_for(slack)
    if warm is None:
        p_b = _snap(np.unique(np.concatenate([_theta_grid(_n_bias_grid(K)), _small_grid(K, 30), [1.0]])))
        mse_grid = MSE_GRID_MAX_MSE if K >= MSE_GRID_COARSE_K else MSE_GRID
        p_m = (_snap(np.unique(np.concatenate([_theta_grid(_n_mse_grid(K, mse_grid)), _small_grid(K, 8, lo=1e-2),
                                               [1.0]])))
               if mode == "worst" else np.zeros(0))
        t_ref = round_table(_initial_table(reward, K), q)
        sigma = 1.0
    else:
        # the refused attempt's grids and last iterate, re-rounded to this attempt's (coarser) quantum
        p_b, p_m, t_ref, sigma = warm.p_b, warm.p_m, round_table(warm.t, q), warm.sigma
        if _DEBUG:
            print(f"aqp tau warm start: {len(p_b)} bias points, {len(p_m)} MSE points, sigma={sigma:.3g}")
    scan = _Scan(K)
    history = []
    best = None
    cert_rounds = 0
    n_almost = 0
    for it in range(1, MAX_ROUNDS + 1):
        prog = _Program(mode, reward, K, t_ref, p_b, p_m, sigma=sigma, beta=beta, beta_solve=beta_s, mean=mean,
                        monotone=monotone, fallback=fallback)
        status, x, obj, dual, nit = prog.solve()
        mult = prog.multipliers() if status in ("solved", "almost") else None
        recent.append(prog.candidate_multipliers())
        del recent[:-4]
        if status == "infeasible":
            if monotone:
                raise _Refused(
                    f"no monotone table (t_1 <= ... <= t_K) has bias within tau*E*_K = {beta:.6g}, even on a "
                    "finite grid; use a larger tau or drop monotone", retry=False)
            raise _Refused(
                "the cone solver declares the budget infeasible on a finite grid, which it is not (the minimax "
                "table meets it): the tables this close to the minimax one are too ill-conditioned")
        if status not in ("solved", "almost"):
            raise _Refused(f"the cone solver did not converge ({status}) in round {it}")
        n_almost = n_almost + 1 if status == "almost" else 0
        if n_almost >= (MAX_ALMOST_RETRY if retry else MAX_ALMOST):
            # the next attempt goes on from here: this round's grids and iterate (as t_ref, sigma
            # of the next round would be), not from the initial table and grids
            t_new = prog.table(x, t_ref)
            t_last = round_table(t_new, q)
            raise _Refused(
                f"the cone solver only reaches reduced accuracy ({n_almost} rounds in a row; entries up to "
                f"{float(np.max(np.abs(t_new))):.3g})",
                warm=_Warm(p_b, p_m, t_last, _next_sigma(t_last, t_ref, beta)))
        t = round_table(prog.table(x, t_ref), q)
        _check_precision(t, slack, K)
        sigma = _next_sigma(t, t_ref, beta)
        res = scan.run(t, reward, want_m=(mode == "worst"))
        xb, fb = res["b"]
        sup_b = float(fb.max())
        if mode == "worst":
            xm, fm = res["m"]
            sup_m = float(fm.max())
            grid_opt = float(x[K]) ** 2
            lower = None if dual is None else max(dual, 0.0) ** 2
        else:
            sup_m = None
            grid_opt = obj
            lower = dual
        history.append((it, len(p_b), len(p_m), nit, status, sup_b / beta, sup_m, grid_opt))
        if _DEBUG:
            sep = best_dual_bound(reward, K, beta, mult, mean=mean) if mult is not None else None
            print(f"aqp tau round {it} {status} grid_opt={grid_opt:.9g} dual={lower} separable={sep} sup_b/beta={sup_b / beta:.6f} sup_m={sup_m}")
        ok_b = sup_b <= accept
        ok_m = mode == "mean" or sup_m <= grid_opt * (1 + M_REL_TOL)
        # exchange: add violated and nearly active maxima
        p_b = _dedupe_add(p_b, xb[fb > 0.98 * beta_s])
        if mode == "worst":
            p_m = _dedupe_add(p_m, xm[fm > grid_opt * (1 - 1e-3)])
        t_ref = t
        # a retry (wider slack) also accepts a reduced-accuracy round: the table is certified
        # independently and the separable dual bound of its multipliers is a proven lower bound
        if retry and status == "almost" and mode == "worst":
            ok_m = sup_m <= grid_opt * (1 + RETRY_GAP)
        if ok_b and ok_m and (status == "solved" or (retry and mult is not None)):
            cert = _certify(t, reward)
            cert_rounds += 1
            if cert.bias.upper <= beta:
                if not retry:
                    best = (t, cert, lower, it)
                    break
                # the cone program's dual is only as good as its accuracy (none in a reduced-accuracy
                # round); the separable bound of the same multipliers is proven, at beta
                lower = best_dual_bound(reward, K, beta, mult, mean=mean)
                upper = float(cert.mse.upper) if mode == "worst" else mean_mse(t, reward)
                if _DEBUG:
                    print(f"aqp tau retry candidate round {it}: upper={upper:.9g} lower={lower:.9g}")
                if upper > 0 and (upper - lower) / upper <= RETRY_GAP:
                    best = (t, cert, lower, it)
                    break
                if cert_rounds >= 3:
                    break
                continue
            # the certifier found more: add its witness and go on
            p_b = _dedupe_add(p_b, np.array([cert.bias.witness]))
            if cert_rounds >= 3:
                break
    if _DEBUG:
        for h in history:
            print("aqp round", h)
    if best is None:
        raise _Refused(f"the certified bias of the float64 table stayed above tau*E*_K after {len(history)} rounds")
    t, cert, lower, it = best
    if mode == "worst":
        upper = float(cert.mse.upper)
        objective_name = "sup_p m(p)"
    else:
        upper = mean_mse(t, reward)
        objective_name = "integral_0^1 m(p) dp"
    params = {
        "method": "exchange (cutting-plane) method for the semi-infinite cone program",
        "solver": SOLVER_NAME,
        "objective": objective_name,
        "objective_upper": _f(upper),
        "objective_lower": _f(lower),
        "gap": _f((upper - lower) / upper if upper > 0 else 0.0),
        "bias_budget": _f(beta),
        "bias_budget_solved": _f(beta - slack),
        "bias_over_level": _f(float(cert.bias.upper) / E),
        "rounds": it,
        "grid_bias_points": int(len(p_b)),
        "grid_mse_points": int(len(p_m)),
        "rounding_quantum": q,
    }
    if mode == "mean":
        # a < 1/2: sup m = ∞ for every table (proven; the file's mse_bound says "inf")
        sup_m = float(cert.mse.upper)
        params["sup_mse_certified"] = _f(sup_m) if math.isfinite(sup_m) else "inf"
    return Solution(values=t, values_exact=exact_strings(t), params=params, exact=False, bias_target=beta)


def _check_precision(t, slack, K):
    """Double precision evaluates T(p) = Σ t_c B_c(p) only to ~√K·u·max|t| (≈ √K terms matter):
    give up when that is not far below the slack between the budget and the solver's target."""
    big = float(np.max(np.abs(t)))
    if 8 * big * math.sqrt(K) * 2.0**-52 > slack / 8:
        raise _Refused(
            f"it needs table entries as large as {big:.3g}, too large for double precision to hold the bias "
            f"within the slack {slack:.3g} below tau*E*_K")


def _f(x: float) -> float:
    """Diagnostics rounded to 10 significant digits (stable across machines)."""
    return float(f"{float(x):.9e}")


def plugin_sup_mse(reward: Reward, K: int) -> float:
    from .baselines import solve_plugin

    return float(_certify(solve_plugin(reward, K).values, reward).mse.upper)


def min_sup_mse(reward: Reward, K: int) -> tuple[float, float, np.ndarray]:
    """(lower, upper, table) of min_t sup_p m(p) with no bias constraint (τ = ∞)."""
    p_b = np.zeros(0)
    p_m = _snap(np.unique(np.concatenate([_theta_grid(_n_mse_grid(K)), _small_grid(K, 8, lo=1e-2), [1.0]])))
    scan = _Scan(K)
    q = 2.0**-40
    t_ref = round_table(_initial_table(reward, K), q)
    lower = upper = None
    sigma = 1.0
    for _ in range(MAX_ROUNDS):
        prog = _Program("worst", reward, K, t_ref, np.array([1.0]), p_m, sigma=sigma, beta=1e300, beta_solve=1e300)
        status, x, obj, dual, nit = prog.solve()
        if status not in ("solved", "almost"):
            raise CheckError(f"aqp {reward.name} K={K}: the cone solver did not converge: {status}")
        t = round_table(prog.table(x, t_ref), q)
        sigma = _next_sigma(t, t_ref, 1e-6)
        xm, fm = scan.run(t, reward)["m"]
        if dual is not None:
            lower = max(dual, 0.0) ** 2
        upper = float(fm.max())
        p_m = _dedupe_add(p_m, xm[fm > x[K] ** 2 * (1 - 1e-3)])
        t_ref = t
        if upper <= x[K] ** 2 * (1 + M_REL_TOL) and status == "solved":
            break
    del p_b
    return lower, upper, t_ref


def _solve_max_mse(reward: Reward, K: int, max_mse, t0, *, gamma=1, monotone=False) -> Solution:
    k_plugin = plugin_factor(max_mse)
    if k_plugin is not None:
        V = k_plugin * plugin_sup_mse(reward, K)
        V_name = max_mse
    else:
        V = float(max_mse)
        V_name = V
    V_s = V * (1 - 1e-4)
    beta0 = float(K) ** (-2 * gamma)
    q = quantum_for(1e-4 / K**2)
    small = _small_grid(K, 30) if gamma == 1 else _small_grid(K, 80, lo=SMALL_P_GAMMA)
    p_b = _snap(np.unique(np.concatenate([_theta_grid(_n_bias_grid(K)), small, [1.0]])))
    p_m = _snap(np.unique(np.concatenate([_theta_grid(_n_mse_grid(K, MSE_GRID_MAX_MSE)), _small_grid(K, 8, lo=1e-2), [1.0]])))
    scan = _Scan(K, gamma)
    t_ref = round_table(_initial_table(reward, K), q)
    best = None
    history = []
    sigma = 1.0
    for it in range(1, MAX_ROUNDS + 1):
        prog = _Program("bias", reward, K, t_ref, p_b, p_m, sigma=sigma, V=V, V_solve=V_s, beta0=beta0,
                        gamma=gamma, monotone=monotone, split=True)
        status, x, obj, dual, nit = prog.solve()
        if status == "infeasible":
            lo, up, _ = min_sup_mse(reward, K)
            raise InputError(
                f"aqp {reward.name} K={K}: max_mse V = {V:.6g} is below what any table reaches "
                f"(the smallest possible sup m is about {up:.6g}, at least {lo:.6g})"
            )
        if status not in ("solved", "almost"):
            raise CheckError(f"aqp {reward.name} K={K}: the cone solver did not converge: {status}")
        y = float(x[K])
        t = round_table(prog.table(x, t_ref), q)
        sigma = _next_sigma(t, t_ref, 1e-3 * y * beta0)
        res = scan.run(t, reward)
        xb, fb = res["b"]
        xm, fm = res["m"]
        sup_b, sup_m = float(fb.max()), float(fm.max())
        grid_opt = y * beta0
        history.append((it, sup_b, sup_m))
        if _DEBUG:
            print("aqp max_mse round", it, status, nit, f"sup_b={sup_b:.9g} grid_opt={grid_opt:.9g} sup_m/V={sup_m / V:.9g}")
        ok_m = sup_m <= V * (1 - 0.5e-4)
        ok_b = sup_b <= grid_opt * (1 + 1e-5)
        p_b = _dedupe_add(p_b, xb[fb > grid_opt * (1 - 1e-3)])
        p_m = _dedupe_add(p_m, xm[fm > V_s * (1 - 1e-3)])
        t_ref = t
        if ok_m and ok_b and status == "solved":
            cert = _certify(t, reward)
            if cert.mse.upper <= V:
                best = (t, cert, max(dual, 0.0) * beta0, it, sup_b)
                break
            p_m = _dedupe_add(p_m, np.array([cert.mse.witness]))
    if best is None:
        raise CheckError(
            f"aqp {reward.name} K={K}: could not certify sup m <= max_mse = {V:.6g} for a float64 table; "
            "V is too close to the smallest reachable sup m"
        )
    t, cert, lower, it, sup_bw = best
    upper = float(cert.bias.upper) if gamma == 1 else sup_bw
    params = {
        "method": "exchange (cutting-plane) method for the semi-infinite cone program",
        "solver": SOLVER_NAME,
        "objective": "sup_p |b(p)|" if gamma == 1 else f"sup_p p^{gamma}*|T(p) - r(p)| (measured on the exchange grid)",
        "objective_upper": _f(upper),
        "objective_lower": _f(lower),
        "gap": _f((upper - lower) / upper if upper > 0 else 0.0),
        "max_mse_value": _f(V),
        "max_mse": V_name,
        "sup_mse_certified": _f(float(cert.mse.upper)),
        "rounds": it,
        "grid_bias_points": int(len(p_b)),
        "grid_mse_points": int(len(p_m)),
        "rounding_quantum": q,
    }
    return Solution(values=t, values_exact=exact_strings(t), params=params, exact=False, bias_target=None)
