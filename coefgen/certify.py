"""Certified brackets for the sup-norm error criteria of a float64 table (DESIGN §4, §6).

For a table t_1..t_K (float64, exactly the numbers a trainer uses) and a reward r, with
B_c(p) the Binomial(K−1, p) law of the count, T = Σ t_c B_c, S = Σ t_c² B_c:

    b(p) = p·T(p) − f(p)  (f = p·r),   v(p) = p·(S − T²),   m(p) = v(p) + b(p)²/p.

``certify`` returns, for sup|b|, sup v and sup m over p ∈ [0, 1], a ``Bracket``
(lower, upper, witness): ``upper`` is a proven upper bound of the sup, ``lower`` is the
value of the function at ``witness`` (evaluated in 50-digit mpmath and rounded down), so
lower ≤ sup ≤ upper.

Method
------
1. Representations without cancellation.  pT(p) = Σ_i d_i B_i^K(p) with d_i = t_i·i/K.
   The variance is written as a Bernstein polynomial of degree 2K−2 with NON-NEGATIVE
   coefficients, Var_p(t_c) = ½ Σ_{i,j} (t_i − t_j)² B_i B_j = Σ_k V_k B_k^{2K−2}(p),
   V_k = Σ_{i+j=k} ½(t_i − t_j)² C(K−1,i)C(K−1,j)/C(2K−2,k) (O(K²) once per table), so
   v = p·Var is evaluated without the S − T² cancellation.  For a polynomial reward of
   degree ≤ K−1 the bias is computed from the exact residual table δ = t − U (U = exact
   unbiased table, δ from exact rationals), b = p·Σ δ_c B_c; if δ = 0 the bias is 0
   exactly (the float64 table is exactly unbiased).
2. Near 0, on [0, a]:  |b| ≤ a·max|t| + sup_{[0,a]}|f|  (reward.f_abs_bound),
   v ≤ a·(max t − min t)²/4,  √m ≤ √v + |b|/√p ≤ √a·(range/2 + max|t|) + √(sup p·r²);
   a is chosen (powers of 2) so these are ≤ ¼ of a coarse estimate of each sup.
3. On [a, 1]: a partition into cells [p0, p1] (p1 ≤ 2·p0; log-spaced near a, arcsine-
   spaced elsewhere, plus the point cell {1}).  On a cell with float midpoint m and
   half-width h, for g ∈ {b, v, m}:  sup|g| ≤ |g(m)| + |g'(m)|·h + M2·h²/2 with
   M2 ≥ sup_cell |g''|.  M2 comes from Bernstein majorants: a polynomial Σ w_j B_j^n has
   sup_cell |Σ w_j B_j^n| ≤ Σ |w_j| max_cell B_j^n, and B_j^n is unimodal with mode j/n,
   so max_cell B_j^n is B_j^n at the cell end nearest the mode, or at the mode.
   b'' = P'' − f'': |P'' − f''| ≤ Σ|w_j − c| max B_j + |c − f''(m)| + sup|f'''|·h with
   c ≈ f''(m) (this keeps the P''/f'' cancellation out of the majorant).
   v'' is the majorant of the degree-(2K−3) coefficients of (p·Var)''.  m'' ≤ v'' +
   2(B1² + B0·B2)/p0 + 4·B0·B1/p0² + 2·B0²/p0³ with B0, B1, B2 cell bounds of |b|, |b'|, |b''|.
   Cells whose bound exceeds lower·(1 + rel_gap/2) (lower = best midpoint value so far)
   are bisected until none do (or they reach float resolution / a work cap; then the
   reported upper is still proven, only the gap is larger).  upper = max(near-0 bound,
   all leaf-cell bounds).
4. Rounding.  Every float64 quantity entering a bound carries an explicit error bound:
   B_j^n(p) = exp(log C(n,j) + j·log p + (n−j)·log1p(−p)) has relative error
   ≤ ρ_j = 8u(A_j + 1), A_j = |log C| + j|log p| + (n−j)|log1p(−p)|, u = 2^−53, ASSUMING
   libm log, log1p, exp, pow are faithful (error < 1 ulp) and math.log of an integer is
   within 4u (CPython).  Coefficient vectors (differences, products) carry first-order
   error bounds; a dot product of n terms adds (n+3)u·Σ|terms| (valid for any summation
   order, so for any BLAS); underflow adds ≤ 1e-300·max|w|.  Evaluated values g(m),
   g'(m) are replaced by |value| + 2·(error bound); majorants use B·(1 + ρ) and a 1e-12
   relative margin for the float mode j/n; all positive-term combinations are inflated by
   (1 + 1e-12).  The rounding error of the bound arithmetic itself is O(100u) relative,
   covered by these margins, so float rounding cannot make ``upper`` fall below the sup.
   f, f' at midpoints have per-reward error bounds (kl, alpha, poly); f'' at a midpoint
   is only used as the centring constant c above, with a 1e-9 relative margin.

5. Huge entries (max|t| > 1e6·sup|b|, K ≤ 256: minimax tables from K ≈ 20).  The float64
   error floor (~K·u·Σ|t_c|B_c) and the alternating Bernstein majorants of b'' make the
   float engine useless for sup|b| there (kl minimax K = 24: gap 3.2e-4).  sup|b| is then
   bounded in ball arithmetic (python-flint arb): P = p·T has exact rational monomial
   coefficients (the float64 entries are dyadic rationals); on each cell the Taylor
   coefficients c_k of P at the midpoint m give
   |b(m+s)| ≤ |c_0 − f(m)| + |c_1 − f'(m)|h + |c_2 − f''(m)/2|h² + Σ_{k≥3}|c_k|h^k + F3·h³/6
   (_bias_ball).  The same path is the fallback whenever the float bias bracket misses rel_gap.
6. alpha:a, 1/2 ≤ a < 1, near 0 (_alpha_mse_near_zero): m = p^(2a−1)/(1−a)² + (2/(1−a))p^a·U1
   + p·U2 with U1 = Σ B_c (t_c − 1/(1−a)) → t_1 − 1/(1−a), so lim_{p→0} m(p) = 4 at a = 1/2
   for every table and sup_[0,a0] m ≤ 4 exactly once U1 < 0 dominates; the lower end is the
   value at a witness p = 2^-70 (4 − O(2^-35)).

Reaches rel_gap ≤ 1e-6 (default) for plugin/digamma/exact tables up to K = 1024 and for
minimax tables as long as they pass the compiler's 1.01·E*_K test (K ≲ 50 for kl).
alpha:a with a < 1/2 has sup m = ∞ (p·r² ~ p^(2a−1) → ∞ at 0 for every table): its mse
bracket has upper = inf (a proven claim, stated as "inf").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from functools import lru_cache

from .bernstein import u_statistic_table
from .rewards import KL, Alpha, Poly, Reward, parse_reward

__all__ = ["Bracket", "Certificate", "certify", "check_claims"]

U = 2.0**-53
_EXP_UNDERFLOW = -746.0  # exp(x) rounds to exactly 0.0 for every x below about -745.13
_MARGIN = 1.0 + 1e-12
_CHUNK_ELEMS = 1 << 19  # basis-matrix elements per chunk
_WINDOW_LOG = 300.0  # columns j with B_j^n ≤ e^-300 on a whole chunk are left out (their sum is bounded)
_TAIL = math.exp(-_WINDOW_LOG) * (1 + 1e-9)  # ≥ B_j^n(p) for every left-out j and p of the chunk
_WINDOW_MIN_K = 128  # below this K all columns are kept (windows would save less than they cost)
_MAX_ROUNDS = 120
_MAX_CELLS = 400_000
_BALL_RATIO = 1e6  # max|t| / sup|b| above which sup|b| is bounded in ball arithmetic
_BALL_MAX_K = 256
_A_FLOOR = 1e-100  # smallest a: keeps f2, f3 (derivatives) finite in float64 for admissible rewards


@dataclass(frozen=True)
class Bracket:
    lower: float  # attained: the function's value at `witness` (rounded down), ≤ true sup
    upper: float  # PROVEN ≥ true sup (rounded up)
    witness: float  # p where lower is attained

    @property
    def rel_gap(self) -> float:
        if self.upper == 0:
            return 0.0
        if math.isinf(self.upper):
            return math.inf
        return (self.upper - self.lower) / self.upper


@dataclass(frozen=True)
class Certificate:
    bias: Bracket  # for sup |b|
    variance: Bracket  # for sup v
    mse: Bracket  # for sup m
    method: str  # one line naming the method


METHOD = (
    "coefgen.certify/1: analytic bound on [0,a] + adaptive cells on [a,1] with 2nd-order Taylor "
    "bounds (Bernstein unimodal majorants for g''), explicit float64 error bounds, 50-digit witness"
)


# ---------------------------------------------------------------------------------
# reward-specific pieces (f, f' at points with error bounds; sup of p·r² near 0)
# ---------------------------------------------------------------------------------
def _f_f1_with_err(reward: Reward, p: np.ndarray):
    """f(p), f'(p) (float64, p > 0) and absolute error bounds."""
    if isinstance(reward, KL):
        lp = np.log(p)
        f = p * lp
        f1 = lp + 1.0
        return f, 4 * U * np.abs(f), f1, 4 * U * (np.abs(lp) + 1.0)
    if isinstance(reward, Alpha):
        a_exact = reward.a
        a = float(a_exact)
        am1 = abs(float(a_exact - 1))
        rel = 4 * U * abs(a) / am1  # float(a), a − 1 conversions
        lp = np.abs(np.log(p))
        pa = p**a
        f = (pa - p) / (a - 1)
        ef = np.abs(f) * rel + 16 * U * (pa * (1 + abs(a) * lp) + p) / am1
        pam1 = p ** (a - 1)
        f1 = (a * pam1 - 1.0) / (a - 1)
        ef1 = np.abs(f1) * rel + 16 * U * (abs(a) * pam1 * (1 + abs(a) * lp) + 1.0) / am1
        return f, ef, f1, ef1
    if isinstance(reward, Poly):
        c = reward.coefficients
        d = len(c) - 1
        absr = np.zeros_like(p)
        absr1 = np.zeros_like(p)
        for m in range(d, -1, -1):
            absr = absr * p + abs(float(c[m]))
            absr1 = absr1 * p + (m + 1) * abs(float(c[m]))
        f = reward.f(p)
        f1 = reward.f_derivative(p, 1)
        k = (4 * d + 12) * U
        return f, k * p * absr, f1, k * absr1
    raise NotImplementedError(f"certify does not know reward {reward!r}")


def _pr2_bound(reward: Reward, a: float) -> float:
    """Proven bound of sup_{0<p≤a} p·r(p)² (may be inf)."""
    a = min(float(a), 1.0)
    if isinstance(reward, KL):
        if a <= math.exp(-2):
            return a * math.log(a) ** 2 * _MARGIN  # p log²p increasing on [0, e^-2]
        return 4 * math.exp(-2) * _MARGIN  # max of p log²p on [0, 1]
    if isinstance(reward, Alpha):
        al = float(reward.a)
        if reward.a > 1:  # |p^(α−1) − 1| ≤ 1
            return a / (al - 1) ** 2 * _MARGIN
        # α < 1: 0 ≤ r ≤ p^(α−1)/(1−α), p·r² ≤ p^(2α−1)/(1−α)²
        if reward.mse_sup_infinite:
            return math.inf
        return a ** (2 * al - 1) / (1 - al) ** 2 * (1 + 1e-10)
    if isinstance(reward, Poly):
        s = sum(abs(float(c)) * a**m for m, c in enumerate(reward.coefficients))
        return a * s * s * (1 + 1e-10)
    raise NotImplementedError(f"certify does not know reward {reward!r}")


# ---------------------------------------------------------------------------------
# float64 Bernstein machinery with error bounds
# ---------------------------------------------------------------------------------
def _basis(n: int, logc: np.ndarray, p: np.ndarray, j0: int = 0, j1: int | None = None):
    """B[i, j − j0] = B_j^n(p_i), j = j0..j1 (default: all), and a relative error bound rho.

    e = log C(n,j) + j·log p + (n−j)·log1p(−p), B = exp(e); A = |log C| + j|log p| + (n−j)|log1p(−p)|
    reuses the products X = j·log p, Y = (n−j)·log1p(−p) (both ≤ 0, so A = log C − X − Y bit for bit),
    and exp, computed in place, is skipped where e < −746 (it would round to exactly 0, slowly)."""
    j1 = n if j1 is None else j1
    j = np.arange(j0, j1 + 1, dtype=float)
    nj = n - j
    lc = logc[j0 : j1 + 1]
    with np.errstate(divide="ignore"):
        lp = np.log(p)
        lq = np.log1p(-p)
    lp = np.where(p > 0, lp, 0.0)[:, None]
    lq = np.where(p < 1, lq, 0.0)[:, None]
    X = j[None, :] * lp          # ≤ 0
    Y = nj[None, :] * lq         # ≤ 0
    e = np.add(lc[None, :], X)
    e += Y
    A = np.subtract(np.abs(lc)[None, :], X, out=X)
    A -= Y
    A += 1.0
    A *= 8 * U
    rho = A
    z0 = p == 0
    if z0.any():
        e[z0, max(1 - j0, 0):] = -np.inf  # exact zeros (every j ≥ 1)
    z1 = p == 1
    if z1.any() and j0 < n:
        e[z1, : n - j0] = -np.inf  # every j < n
    live = e > _EXP_UNDERFLOW
    B = np.exp(e, out=e, where=live)
    B[~live] = 0.0
    return B, rho


@lru_cache(maxsize=64)
def _log_binom_cached(n: int) -> np.ndarray:
    """log C(n, j), j = 0..n: exact integers by recurrence, then math.log (within a few u)."""
    out = np.empty(n + 1)
    c = 1
    for j in range(n + 1):
        out[j] = math.log(c)
        c = c * (n - j) // (j + 1)
    out.flags.writeable = False
    return out


def log_binomial_coefficients(n: int) -> np.ndarray:
    return _log_binom_cached(n)


def _mode_max(n: int, logc: np.ndarray) -> np.ndarray:
    """Upper bounds of max_p B_j^n(p) = B_j^n(j/n), j = 0..n."""
    if n == 0:
        return np.ones(1) * _MARGIN
    j = np.arange(n + 1, dtype=float)
    x = j / n
    with np.errstate(divide="ignore"):
        lp = np.where(j > 0, np.log(x), 0.0)
        lq = np.where(j < n, np.log1p(-x), 0.0)
    e = logc + j * lp + (n - j) * lq
    A = np.abs(logc) + j * np.abs(lp) + (n - j) * np.abs(lq)
    # 1e-12: float(j/n) is within u of the mode, where B_j^n is flat to second order
    return np.exp(e) * (1 + 8 * U * (A + 1.0)) * _MARGIN


def _window(n: int, lo: float, hi: float, K: int) -> tuple[int, int]:
    """chernoff_window(n, lo, hi), or all columns (0, n) below _WINDOW_MIN_K."""
    return chernoff_window(n, lo, hi) if K >= _WINDOW_MIN_K else (0, n)


@lru_cache(maxsize=16)
def _grid_logs(n: int):
    """x = j/n, log x and log1p(−x), j = 0..n (read-only; chernoff_window calls this per chunk)."""
    x = np.arange(n + 1, dtype=float) / n
    with np.errstate(divide="ignore"):
        out = (x, np.log(x), np.log1p(-x))
    for a in out:
        a.flags.writeable = False
    return out


def chernoff_window(n: int, lo: float, hi: float, L: float = _WINDOW_LOG) -> tuple[int, int]:
    """(j0, j1) with B_j^n(p) ≤ e^−L for every p in [lo, hi] and every j outside j0..j1.

    Chernoff: B_j^n(p) ≤ exp(−n·D(j/n‖p)) on the tail side of p, and B_j^n decreases away from its
    mode j/n; so j < j0 (j/n < lo) are bounded at lo, j > j1 (j/n > hi) at hi. The float64 D is
    compared with L + 1 (its rounding error is far below 1)."""
    if n == 0:
        return 0, 0
    x, lx, l1x = _grid_logs(n)

    def nD(p: float) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            a = np.where(x > 0, x * (lx - math.log(p)) if p > 0 else np.inf, 0.0)
            b = np.where(x < 1, (1 - x) * (l1x - math.log1p(-p)) if p < 1 else np.inf, 0.0)
        return n * (a + b)

    far = L + 1.0
    j0 = 0
    if lo > 0:
        left = np.nonzero((x < lo) & (nD(lo) >= far))[0]
        j0 = int(left[-1]) + 1 if len(left) else 0
    j1 = n
    if hi < 1:
        right = np.nonzero((x > hi) & (nD(hi) >= far))[0]
        j1 = int(right[0]) - 1 if len(right) else n
    return j0, max(j1, j0)


class _Poly:
    """Coefficient vector w (Bernstein degree n) with an absolute error bound ew."""

    def __init__(self, w, ew):
        self.w = np.asarray(w, dtype=float)
        self.ew = np.asarray(ew, dtype=float)
        self.n = len(self.w) - 1
        self.abs_sum = float(np.sum(np.abs(self.w) + self.ew)) * (1 + (self.n + 4) * U)  # ≥ Σ(|w| + ew)

    def diff(self, scale: float) -> "_Poly":
        """scale·Δw (Bernstein coefficients of the derivative when scale = n)."""
        dw = np.diff(self.w)
        edw = self.ew[1:] + self.ew[:-1] + 2 * U * np.abs(dw)
        w = dw * scale
        return _Poly(w, edw * scale * (1 + 2 * U) + 2 * U * np.abs(w))


def _eval(polys, B, rho, j0: int = 0, tail: bool = False):
    """Values and error bounds of polys (same degree n) at the rows of B, whose columns are
    j = j0..j0 + width − 1 (overwrites rho with B·rho). ``tail``: the left-out columns have
    B_j ≤ _TAIL, and Σ_left-out |w_j|·B_j ≤ _TAIL·Σ_j (|w_j| + ew_j) joins the error bound."""
    j1 = j0 + B.shape[1] - 1
    n = len(polys[0].w) - 1
    W = np.stack([q.w[j0 : j1 + 1] for q in polys], axis=1)
    aW = np.abs(W)
    eW = np.stack([q.ew[j0 : j1 + 1] for q in polys], axis=1)
    val = B @ W
    mag = B @ aW
    err = np.multiply(B, rho, out=rho) @ aW + B @ eW + (n + 3) * U * mag
    err = 2.0 * err + 1e-300 * (aW.max(axis=0) + eW.max(axis=0))[None, :]
    if tail:
        err += np.array([2 * _TAIL * q.abs_sum for q in polys])[None, :]
    return val, err


class _Engine:
    def __init__(self, t: np.ndarray, reward: Reward, delta: np.ndarray | None, edelta):
        K = len(t)
        self.K = K
        self.reward = reward
        self.t = t
        n1 = K - 1
        # --- bias polynomials: x = table whose p·T is compared with f (or δ with f ≡ 0)
        x = t if delta is None else delta
        ex = np.zeros(K) if delta is None else edelta
        self.has_f = delta is None
        self.Tx = _Poly(x, ex)  # degree K−1
        i = np.arange(1, K + 1, dtype=float)
        d = np.concatenate([[0.0], x * (i / K)])
        ed = np.concatenate([[0.0], ex * (i / K) * (1 + 4 * U) + 3 * U * np.abs(x * (i / K))])
        P = _Poly(d, ed)  # degree K
        self.P1 = P.diff(K)  # degree K−1
        self.P2 = self.P1.diff(K - 1)  # degree K−2
        # --- variance: V_k ≥ 0, degree 2K−2
        V, rel = _variance_coefficients(t)
        self.V = _Poly(V, V * rel)
        N = 2 * K - 1
        k = np.arange(1, N + 1, dtype=float)
        Wc = np.concatenate([[0.0], V * (k / N)])
        W = _Poly(Wc, Wc * (rel + 4 * U))  # p·Var, degree 2K−1
        self.W1 = W.diff(N)  # degree 2K−2
        self.W2 = self.W1.diff(N - 1)  # degree 2K−3
        self.var_zero = not np.any(V > 0)
        # log binomials
        self.lc = {}
        for n in {n1, K - 2, 2 * K - 2, 2 * K - 3}:
            self.lc[n] = log_binomial_coefficients(n)
        # mode maxima (upper bounds) for majorant degrees
        self.mode_max = {}
        for n in (K - 2, 2 * K - 3):
            self.mode_max[n] = _mode_max(n, self.lc[n])

    # ---------------------------------------------------------------------------
    def _maj(self, n, pts, i0, i1, j0=0, j1=None):
        """For cells (pts[i0], pts[i1]): matrix of upper bounds of max_cell B_j^n, j = j0..j1."""
        j1 = n if j1 is None else j1
        B, rho = _basis(n, self.lc[n], pts, j0, j1)
        rho += 1.0
        Bu = np.multiply(B, rho, out=B)  # B·(1 + ρ), in place
        modes = np.arange(j0, j1 + 1) / max(n, 1)
        p0 = pts[i0][:, None]
        p1 = pts[i1][:, None]
        M = np.where(modes[None, :] > p1, Bu[i1], self.mode_max[n][None, j0 : j1 + 1])
        left = modes[None, :] < p0
        M[left] = Bu[i0][left]
        M *= _MARGIN
        return M

    def bounds(self, p0: np.ndarray, p1: np.ndarray):
        """Cell bounds (3, N), midpoint values (3, N) and midpoints for cells [p0, p1]."""
        K = self.K
        m = 0.5 * (p0 + p1)
        m = np.minimum(np.maximum(m, p0), p1)
        h = np.maximum(m - p0, p1 - m) * (1 + 4 * U)
        # ---- midpoint values (columns where B_j ≤ e^-300 on the whole chunk are left out, their
        # contribution bounded by _TAIL; the cells of a chunk are neighbours, see _chunks)
        lo, hi = float(m.min()), float(m.max())
        w = _window(K - 1, lo, hi, K)
        B, rho = _basis(K - 1, self.lc[K - 1], m, *w)
        val, err = _eval([self.Tx, self.P1], B, rho, w[0], tail=w != (0, K - 1))
        Tx, eTx = val[:, 0], err[:, 0]
        P1, eP1 = val[:, 1], err[:, 1]
        del B, rho
        w = _window(2 * K - 2, lo, hi, K)
        B, rho = _basis(2 * K - 2, self.lc[2 * K - 2], m, *w)
        val, err = _eval([self.V, self.W1], B, rho, w[0], tail=w != (0, 2 * K - 2))
        Var, eVar = val[:, 0], err[:, 0]
        v1, ev1 = val[:, 1], err[:, 1]
        del B, rho
        b = m * Tx
        eb = m * eTx + 2 * U * np.abs(b)
        b1, eb1 = P1, eP1
        if self.has_f:
            f, ef, f1, ef1 = _f_f1_with_err(self.reward, m)
            bb = b - f
            eb = eb + ef + U * np.abs(bb)
            b = bb
            bb1 = b1 - f1
            eb1 = eb1 + ef1 + U * np.abs(bb1)
            b1 = bb1
        v = m * Var
        ev = m * eVar + 2 * U * np.abs(v)
        # ---- majorants on cells (endpoints shared between cells)
        pts, inv = np.unique(np.concatenate([p0, p1]), return_inverse=True)
        i0, i1 = inv[: len(p0)], inv[len(p0):]
        lo, hi = float(pts[0]), float(pts[-1])
        if K >= 2:
            j0, j1 = w = _window(K - 2, lo, hi, K)
            M = self._maj(K - 2, pts, i0, i1, j0, j1)
            w2 = self.P2.w[j0 : j1 + 1]
            ew2 = self.P2.ew[j0 : j1 + 1]
            part = w != (0, K - 2)  # left-out j: M_j ≤ _TAIL, |w_j − c| + ew_j ≤ |w_j| + ew_j + |c|
            if self.has_f:
                c = self.reward.f_derivative(m, 2)
                F2 = self.reward.f_derivative_abs_bound(p0, p1, 2)
                F3 = self.reward.f_derivative_abs_bound(p0, p1, 3)
                ec = 1e-9 * (np.abs(c) + F2)
                dev = np.abs(w2[None, :] - c[:, None]) + ew2[None, :]
                B2 = (M * dev).sum(axis=1) * (1 + (K + 3) * U) + ec + F3 * h
                if part:
                    B2 += 2 * _TAIL * (self.P2.abs_sum + (K - 1) * np.abs(c))
            else:
                B2 = M @ (np.abs(w2) + ew2) * (1 + (K + 3) * U)
                if part:
                    B2 += 2 * _TAIL * self.P2.abs_sum
            B2 = B2 * _MARGIN + 1e-300
            del M
        else:  # pragma: no cover - K = 1 is elevated to K = 2 by certify
            B2 = np.zeros_like(m)
        j0, j1 = w = _window(2 * K - 3, lo, hi, K)
        M = self._maj(2 * K - 3, pts, i0, i1, j0, j1)
        V2 = M @ (np.abs(self.W2.w[j0 : j1 + 1]) + self.W2.ew[j0 : j1 + 1]) * (1 + (2 * K) * U)
        if w != (0, 2 * K - 3):
            V2 += 2 * _TAIL * self.W2.abs_sum
        V2 = V2 * _MARGIN + 1e-300
        del M
        # ---- Taylor bounds
        ab = np.abs(b) + eb
        ab1 = np.abs(b1) + eb1
        bound_b = (ab + ab1 * h + 0.5 * B2 * h * h) * _MARGIN
        av = np.abs(v) + ev
        av1 = np.abs(v1) + ev1
        bound_v = (av + av1 * h + 0.5 * V2 * h * h) * _MARGIN
        # m = v + b²/p, m' = v' + 2bb'/p − b²/p²
        mm = v + b * b / m
        em = ev + (2 * np.abs(b) * eb + eb * eb) / m * (1 + 4 * U) + 4 * U * (np.abs(v) + b * b / m)
        m1 = v1 + 2 * b * b1 / m - b * b / (m * m)
        em1 = (
            ev1
            + 2 * (np.abs(b1) * eb + np.abs(b) * eb1 + eb * eb1) / m * (1 + 4 * U)
            + (2 * np.abs(b) * eb + eb * eb) / (m * m) * (1 + 4 * U)
            + 8 * U * (np.abs(v1) + 2 * np.abs(b * b1) / m + b * b / (m * m))
        )
        B0 = bound_b
        B1 = (ab1 + B2 * h) * _MARGIN
        lo = np.where(p0 > 0, p0, np.inf)
        M2m = V2 + 2 * (B1 * B1 + B0 * B2) / lo + 4 * B0 * B1 / (lo * lo) + 2 * B0 * B0 / (lo * lo * lo)
        M2m = M2m * (1 + 16 * U)
        bound_m = ((np.abs(mm) + em) + (np.abs(m1) + em1) * h + 0.5 * M2m * h * h) * _MARGIN
        # point cells (h = 0) need no derivative information
        pt = h == 0
        if pt.any():
            bound_b[pt] = ab[pt] * _MARGIN
            bound_v[pt] = av[pt] * _MARGIN
            bound_m[pt] = (np.abs(mm[pt]) + em[pt]) * _MARGIN
        bounds = np.stack([bound_b, bound_v, bound_m])
        vals = np.stack([np.abs(b), v, mm])
        return bounds, vals, m


def _chunks(p0: np.ndarray, p1: np.ndarray, K: int):
    """Slices of the cells (sorted by p0) with at most _CHUNK_ELEMS // 2K cells each, a chunk
    spanning about a quarter of the Chernoff window width at its first cell (columns kept for
    a chunk are those of its whole span; a performance choice, every window is proven)."""
    n = 2 * K - 2
    rows = max(1, _CHUNK_ELEMS // (2 * K))
    if K < _WINDOW_MIN_K:  # all columns: chunks of the full row count
        yield from (slice(s, s + rows) for s in range(0, len(p0), rows))
        return
    q = p0 * (1 - p0)
    span = 0.25 * (2 * np.sqrt(2 * _WINDOW_LOG * q / n) + _WINDOW_LOG / n)
    s, N = 0, len(p0)
    while s < N:
        e = int(np.searchsorted(p1, p0[s] + span[s], side="right"))
        e = min(max(e, s + 1), s + rows, N)
        yield slice(s, e)
        s = e


def _variance_coefficients(t: np.ndarray):
    """V_k ≥ 0 with Var_p(t_c) = Σ_k V_k B_k^{2K−2}(p), and a relative error bound."""
    K = len(t)
    n = K - 1
    lc = log_binomial_coefficients(n)
    lc2 = log_binomial_coefficients(2 * n)
    V = np.zeros(2 * n + 1)
    rows = max(1, _CHUNK_ELEMS // max(K, 1))
    j = np.arange(K)
    maxlog = 0.0
    for s in range(0, K, rows):
        i = np.arange(s, min(K, s + rows))
        k = i[:, None] + j[None, :]
        L = lc[i][:, None] + lc[None, :] - lc2[k]
        maxlog = max(maxlog, float((np.abs(lc[i][:, None]) + np.abs(lc[None, :]) + np.abs(lc2[k])).max()))
        d = t[i][:, None] - t[None, :]
        terms = 0.5 * d * d * np.exp(L)
        V += np.bincount(k.ravel(), weights=terms.ravel(), minlength=2 * n + 1)
    rel = 2 * (8 * U * (maxlog + 1) + (K + 8) * U)
    return V, rel


# ---------------------------------------------------------------------------------
# high-precision evaluation at witnesses
# ---------------------------------------------------------------------------------
def _round_down(x) -> float:
    fl = float(x)
    if mpmath.mpf(fl) > x:
        fl = float(np.nextafter(fl, -np.inf))
    return fl


def _mp_values(t, reward, delta_exact, w: float):
    """(|b|, v, m) at p = w, each in 50-digit arithmetic minus a safety margin, rounded down."""
    K = len(t)
    n = K - 1
    with mpmath.workdps(50):
        p = mpmath.mpf(w)
        if p == 1:
            B = [mpmath.mpf(0)] * n + [mpmath.mpf(1)]
        else:
            q = 1 - p
            B = [q**n]
            ratio = p / q
            for j in range(n):
                B.append(B[-1] * (n - j) / (j + 1) * ratio)
        tm = [mpmath.mpf(x) for x in t]
        T = mpmath.fsum(x * y for x, y in zip(tm, B))
        absT = mpmath.fsum(abs(x) * y for x, y in zip(tm, B))
        r = reward.r_mp(p)
        if delta_exact is None:
            b = p * T - p * r
            bmag = p * absT + abs(p * r)
        else:
            dm = [mpmath.mpf(x.numerator) / x.denominator for x in delta_exact]
            b = p * mpmath.fsum(x * y for x, y in zip(dm, B))
            bmag = p * mpmath.fsum(abs(x) * y for x, y in zip(dm, B))
        v = p * mpmath.fsum((x - T) ** 2 * y for x, y in zip(tm, B))
        if delta_exact is None:
            mm = p * mpmath.fsum((x - r) ** 2 * y for x, y in zip(tm, B))
        else:
            mm = v + b * b / p
        eps = mpmath.mpf(10) ** -40
        mag = 1 + bmag + p * mpmath.fsum(x * x * y for x, y in zip(tm, B)) + p * r * r
        out = []
        for val in (abs(b) - eps * (bmag + 1e-300), v * (1 - eps) - eps * 1e-300, mm * (1 - eps) - eps * 1e-300 * mag):
            out.append(max(0.0, _round_down(val)))
        return out


# ---------------------------------------------------------------------------------
def _exact_residual(values: np.ndarray, reward: Reward):
    """For a polynomial reward of degree ≤ K−1: exact δ_c = t_c − U_c (Fractions), else None."""
    coeffs = reward.poly_coefficients
    K = len(values)
    if coeffs is None or len(coeffs) - 1 > K - 1:
        return None
    Uc = u_statistic_table(coeffs, K)
    return [Fraction(float(x)) - u for x, u in zip(values, Uc)]


def _near_zero(a, tmax, trange, reward, delta_max):
    if delta_max is None:
        nb = a * tmax + reward.f_abs_bound(a)
        pr2 = _pr2_bound(reward, a)
        sm = math.sqrt(a) * (0.5 * trange + tmax) + math.sqrt(pr2)
    else:
        nb = a * delta_max
        sm = math.sqrt(a) * (0.5 * trange + delta_max)
    nv = a * 0.25 * trange * trange
    return np.array([nb, nv, sm * sm]) * (1 + 1e-10)


def _half_alpha(reward) -> bool:
    """alpha:1/2: lim_{p→0} m(p) = 4 for every table (see _alpha_mse_near_zero)."""
    return isinstance(reward, Alpha) and 2 * reward.a == 1


def _alpha_mse_near_zero(t, reward, a0: float) -> float:
    """Proven bound of sup_{0<p≤a0} m(p) for alpha:a with 1/2 ≤ a < 1 (exact limit analysis at 0).

    With k = 1 − a, r = (1 − p^(a−1))/k, u_c = t_c − 1/k, U1 = Σ B_c u_c, U2 = Σ B_c u_c²:

        m(p) = p·Σ B_c (u_c + p^(a−1)/k)² = p^(2a−1)/k² + (2/k)·p^a·U1(p) + p·U2(p),

    U1 ≤ u_1 + (1 − B_1)·D ≤ u_1 + (K−1)p·D (D = max|u_c − u_1|), U2 ≤ W = max u_c². If
    c = u_1 + (K−1)a0·D < 0, then W·p − (2|c|/k)·p^a ≤ 0 for p^(1−a) ≤ 2|c|/(kW), so on [0, a0]
    m ≤ a0^(2a−1)/k² — exactly 4 = lim_{p→0} m(p) at a = 1/2: the sup is then the limit."""
    a = reward.a
    k = float(1 - a)
    al = float(a)
    K = len(t)
    u = np.asarray(t, dtype=float) - 1.0 / k
    u1 = float(u[0])
    D = float(np.max(np.abs(u - u1))) * (1 + 1e-12)
    W = float(np.max(u * u)) * (1 + 1e-12)
    slop = 1e-12 * (abs(u1) + (K - 1) * a0 * D + 1.0 / k + 1.0)  # float rounding of u, c
    c = u1 + (K - 1) * a0 * D + slop
    half = 2 * a == 1
    g = 1.0 / (k * k) if half else a0 ** (2 * al - 1) / (k * k) * (1 + 1e-10)  # 1/k² = 4 exactly at a = 1/2
    if c < 0:
        c1 = -2.0 * c / k
        if W == 0 or a0 ** (1 - al) * W * (1 + 1e-10) <= c1 * (1 - 1e-10):
            return g
        return (g + W * a0) * (1 + 1e-10)
    return (g + 2.0 * a0**al * c / k + a0 * W) * (1 + 1e-10)


def _coarse_estimates(t, reward, delta_f):
    from .bernstein import count_pmf

    K = len(t)
    p = np.unique(np.concatenate([np.geomspace(1e-12, 1, 200), np.linspace(0, 1, 257)[1:]]))
    B = count_pmf(K, p)
    T = B @ t
    x = t if delta_f is None else delta_f
    Tx = B @ x
    b = p * Tx - (reward.f(p) if delta_f is None else 0.0)
    v = p * np.maximum(B @ (t * t) - T * T, 0)
    m = v + b * b / p
    est = np.array([np.nanmax(np.abs(b)), np.nanmax(v), np.nanmax(m)])
    return np.where(np.isfinite(est), est, 0.0)


def certify(values, reward, *, rel_gap: float = 1e-6) -> Certificate:
    """Certified brackets for sup|b|, sup v, sup m over [0, 1] of the float64 table."""
    if isinstance(reward, str):
        reward = parse_reward(reward)
    t = np.asarray(values, dtype=float).ravel()
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError("table values must be a non-empty list of finite floats")
    if t.size == 1:
        t = np.array([t[0], t[0]])  # degree elevation: same T, Var ≡ 0
    key = (t.tobytes(), reward.name, float(rel_gap))
    hit = _RECENT.get(key)
    if hit is not None:  # the same float64 table certified moments ago (the solver's final round,
        return hit       # then compile_table): a Certificate is immutable and a pure function of the key
    cert = _certify_uncached(t, reward, rel_gap)
    _RECENT[key] = cert
    while len(_RECENT) > 8:
        _RECENT.pop(next(iter(_RECENT)))
    return cert


_RECENT: dict = {}  # (values bytes, reward name, rel_gap) -> Certificate, the last few


def _certify_uncached(t, reward, rel_gap) -> Certificate:
    delta_exact = _exact_residual(t, reward)
    delta_f = edelta = None
    if delta_exact is not None:
        delta_f = np.array([float(x) for x in delta_exact])
        edelta = 2 * U * np.abs(delta_f) + 1e-320
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _certify(t, reward, rel_gap, delta_exact, delta_f, edelta)


def _certify(t, reward, rel_gap, delta_exact, delta_f, edelta):
    K = len(t)
    exactly_unbiased = delta_exact is not None and not any(delta_exact)
    eng = _Engine(t, reward, delta_f, edelta)

    tmax = float(np.max(np.abs(t)))
    trange = float(np.max(t) - np.min(t))
    dmax = None if delta_f is None else float(np.max(np.abs(delta_f) + edelta))
    est = _coarse_estimates(t, reward, delta_f)
    skip = np.array([exactly_unbiased, eng.var_zero, exactly_unbiased and eng.var_zero])
    a = 2.0**-10 / K
    # criteria whose near-0 bound cannot drop below 1/4 of the estimate (sup m approached
    # as p -> 0, e.g. alpha:1/2) do not drive a down; their bracket is then wider.
    reachable = _near_zero(_A_FLOOR, tmax, trange, reward, dmax) <= 0.25 * est
    while a > _A_FLOOR:
        nz = _near_zero(a, tmax, trange, reward, dmax)
        if np.all((nz <= 0.25 * est) | skip | (est <= 0) | ~reachable):
            break
        a *= 2.0**-4
    nz = _near_zero(a, tmax, trange, reward, dmax)
    if isinstance(reward, Alpha) and Fraction(1, 2) <= reward.a < 1 and delta_f is None:
        if _half_alpha(reward):
            # m = 4 + 4(t_1 − 2)√p + O(p). t_1 < 2: shrink a until sup_[0,a] m is proven to be the
            # limit 4; t_1 ≥ 2: until the near-0 bound is within the gap of the estimated sup
            goal = 4.0 if t[0] < 2.0 else max(4.0, float(est[2])) * (1 + 0.25 * rel_gap)
            while a > _A_FLOOR and _alpha_mse_near_zero(t, reward, a) > goal:
                a *= 2.0**-4
            nz = _near_zero(a, tmax, trange, reward, dmax)
        nz[2] = min(nz[2], _alpha_mse_near_zero(t, reward, a))
    nz = np.where(skip, 0.0, nz)

    # initial cells
    geo = np.geomspace(a, 1.0, int(math.ceil(math.log2(1.0 / a) * 2)) + 1)
    th = np.linspace(0, np.pi / 2, max(64, K) + 1)
    arc = np.sin(th) ** 2
    pts = np.unique(np.concatenate([geo, arc[arc > a], [a, 1.0]]))
    pts = pts[(pts >= a) & (pts <= 1.0)]
    p0 = np.concatenate([pts[:-1], [1.0]])
    p1 = np.concatenate([pts[1:], [1.0]])

    # entries far above the bias (minimax tables, K ≳ 22): the float64 engine cannot resolve
    # sup|b| (error floor ~ K·u·max|t|, alternating Bernstein majorants); go straight to balls
    ball_bias = (not skip[0] and delta_exact is None and isinstance(reward, (KL, Alpha, Poly))
                 and K <= _BALL_MAX_K and tmax > _BALL_RATIO * est[0])
    skip_loop = skip | np.array([ball_bias, False, False])
    best = np.zeros(3)
    wit = np.array([1.0, 1.0, 1.0])
    if _half_alpha(reward) and not skip[2]:
        # sup m ≥ lim_{p→0} m(p) = 4: a witness close to 0 brings the lower end to 4(1 − O(2^-35))
        w0 = min(2.0**-70, a / 2)
        best[2] = _mp_values(t, reward, delta_exact, w0)[2]
        wit[2] = w0
    upper = nz.copy()
    total = 0
    for _round in range(_MAX_ROUNDS):
        if len(p0) == 0:
            break
        if K >= _WINDOW_MIN_K:
            order = np.argsort(p0, kind="stable")  # neighbouring cells share a chunk (narrow windows)
            p0, p1 = p0[order], p1[order]
        bnds = np.empty((3, len(p0)))
        mids = np.empty(len(p0))
        for sl in _chunks(p0, p1, K):
            bb, vv, mm = eng.bounds(p0[sl], p1[sl])
            bnds[:, sl] = bb
            mids[sl] = mm
            for g in range(3):
                k = int(np.argmax(vv[g]))
                if vv[g][k] > best[g]:
                    best[g] = vv[g][k]
                    wit[g] = mm[k]
        total += len(p0)
        target = best * (1 + 0.5 * rel_gap)
        ok = np.all((bnds <= target[:, None]) | skip_loop[:, None], axis=0)
        tiny = (p1 - p0) <= 8 * U * p1
        done = ok | tiny
        if done.any():
            upper = np.maximum(upper, np.where(skip_loop, 0.0, bnds[:, done].max(axis=1)))
        p0, p1, mids = p0[~done], p1[~done], mids[~done]
        if total + 2 * len(p0) > _MAX_CELLS or _round == _MAX_ROUNDS - 1:
            if len(p0):
                upper = np.maximum(upper, np.where(skip_loop, 0.0, bnds[:, ~done].max(axis=1)))
            p0 = p0[:0]
            break
        p0, p1 = np.concatenate([p0, mids]), np.concatenate([mids, p1])

    if ball_bias or (not skip[0] and delta_exact is None and best[0] > 0
                     and float(upper[0]) > best[0] * (1 + rel_gap) and isinstance(reward, (KL, Alpha, Poly))):
        # float64 error floor / Bernstein majorants too coarse (huge alternating entries):
        # sup|b| on [a, 1] in ball arithmetic; both uppers are proven, keep the smaller
        # seed with the TRUE value at the float witness: float midpoint values of such tables are
        # noisy, and an overestimated seed would stop the ball bisection too early
        seed = _mp_values(t, reward, None, float(wit[0]))[0]
        up_b, best_b, wit_b = _bias_ball(t, reward, a, rel_gap, float(est[0]), seed, float(wit[0]))
        best[0], wit[0] = best_b, wit_b
        up_b = max(float(nz[0]), up_b)
        upper[0] = up_b if ball_bias else min(float(upper[0]), up_b)

    brackets = []
    mp_cache = {}
    for g in range(3):
        if skip[g]:
            brackets.append(Bracket(0.0, 0.0, 0.0))
            continue
        w = float(wit[g])
        if w not in mp_cache:
            mp_cache[w] = _mp_values(t, reward, delta_exact, w)
        lo = mp_cache[w][g]
        up = float(upper[g])
        if g == 2 and reward.mse_sup_infinite:
            up = math.inf
        brackets.append(Bracket(lo, max(up, lo), w))
    return Certificate(bias=brackets[0], variance=brackets[1], mse=brackets[2], method=METHOD)


# ---------------------------------------------------------------------------------
# sup|b| in ball arithmetic (tables with huge alternating entries)
# ---------------------------------------------------------------------------------
def _exact_pT_monomial(t: np.ndarray):
    """(S, den): P(x) = p·T(p) = Σ_j S_j x^j / den exactly (integers), for the float64 table t.

    t_i = N_i/2^E exactly, P = Σ_i d_i B_i^K with d_i = t_i·i/K, so
    S_j = C(K, j)·Σ_{i≤j} (−1)^(j−i) C(j, i)·i·N_i and den = K·2^E."""
    K = len(t)
    fr = [Fraction(float(x)) for x in t]
    E = max(f.denominator for f in fr).bit_length() - 1
    N = [0] + [int(f * (1 << E)) for f in fr]  # N[i], i = 1..K
    iN = [i * N[i] for i in range(K + 1)]
    S = [0] * (K + 1)
    for j in range(1, K + 1):
        acc = 0
        cj = 1  # C(j, i) for i = 0..j
        for i in range(j + 1):
            if iN[i]:
                acc += cj * iN[i] if (j - i) % 2 == 0 else -cj * iN[i]
            cj = cj * (j - i) // (i + 1)
        S[j] = math.comb(K, j) * acc
    return S, K << E


def _bias_ball(t, reward, a: float, rel_gap: float, est_b: float, best: float, wit: float):
    """(upper, best, witness) for sup_[a,1] |b|, with the Taylor coefficients c_k of the exact
    P = p·T at cell midpoints and f, f', f'' in ball arithmetic (python-flint arb).

    On a cell with midpoint m and half-width h:
        |b(m+s)| ≤ |c_0 − f(m)| + |c_1 − f'(m)|·h + |c_2 − f''(m)/2|·h² + Σ_{k≥3} |c_k|·h^k + F3·h³/6,
    F3 ≥ sup_cell |f'''|. No float error floor and no Bernstein-majorant overestimation, which
    is what limits the float64 engine when the entries are huge and alternate (minimax tables)."""
    from flint import arb, arb_poly

    from .solvers.minimax import _ArbReward, _prec

    K = len(t)
    S, den = _exact_pT_monomial(t)
    log2_mag = max(0, sum(abs(x) for x in S).bit_length() - den.bit_length() + 1)  # ≥ log2(Σ|a_j|)
    tgt = max(est_b, 1e-300) * rel_gap * 1e-3
    bits = max(128, int(log2_mag - math.log2(tgt)) + 64)
    fr = _ArbReward(reward, K)
    out_upper = 0.0

    def up(x) -> float:  # a float ≥ the upper end of the ball x
        return float(x.upper()) * (1 + 2.0**-50)

    with _prec(bits):
        P = arb_poly([arb(x) / den for x in S])
        shift = arb_poly([0, 1])
        geo = np.geomspace(a, 1.0, int(math.ceil(math.log2(1.0 / a) * 2)) + 1)
        th = np.linspace(0, np.pi / 2, max(64, K) + 1)
        arc = np.sin(th) ** 2
        pts = np.unique(np.concatenate([geo, arc[arc > a], [a, 1.0]]))
        pts = pts[(pts >= a) & (pts <= 1.0)]
        cells = list(zip(pts[:-1].tolist(), pts[1:].tolist())) + [(1.0, 1.0)]
        total = 0
        for _round in range(_MAX_ROUNDS):
            if not cells:
                break
            rows = []
            for p0, p1 in cells:
                m = min(max(0.5 * (p0 + p1), p0), p1)
                h = max(m - p0, p1 - m) * (1 + 4 * U)
                am = arb(m)
                c = P(shift + am).coeffs()
                c = c + [arb(0)] * (K + 1 - len(c))
                val = abs(c[0] - fr.f(am))
                lo = float(val.lower())
                if lo > best:
                    best, wit = lo, m
                if h == 0:
                    bound = up(val)
                else:
                    ah = arb(h)
                    bnd = val + abs(c[1] - fr.f1(am)) * ah + abs(c[2] - fr.f2(am) / 2) * ah * ah
                    hk = ah * ah * ah
                    for k in range(3, K + 1):
                        bnd += abs(c[k]) * hk
                        hk = hk * ah
                    bnd += fr.f3_bound(p0, p1) * ah * ah * ah / 6
                    bound = up(bnd)
                rows.append((p0, p1, m, bound))
            total += len(cells)
            target = best * (1 + 0.5 * rel_gap)
            nxt = []
            for p0, p1, m, bound in rows:
                if bound <= target or (p1 - p0) <= 8 * U * p1:
                    out_upper = max(out_upper, bound)
                else:
                    nxt.append((p0, p1, m, bound))
            if total + 2 * len(nxt) > _MAX_CELLS // 8 or _round == _MAX_ROUNDS - 1:
                for row in nxt:
                    out_upper = max(out_upper, row[3])
                break
            cells = [c for p0, p1, m, _b in nxt for c in ((p0, m), (m, p1))]
    return out_upper, best, wit


# ---------------------------------------------------------------------------------
def _as_fraction(s) -> Fraction:
    if isinstance(s, float):
        return Fraction(s)
    return Fraction(str(s).strip())


def check_claims(payload: dict, reward, *, rel_tol: float = 1e-6) -> list[str]:
    """One line per failed claim of a table payload (empty list: every claim holds).

    A stated bound fails when it is below the certified upper bound (after one attempt to
    tighten the certificate with a 100× smaller gap, so that a valid proven bound from
    another machine is not rejected), or above it by more than rel_tol relative; a stated
    bias_lower fails when it exceeds the certified upper bound.  For an ``exact`` table
    the certified bias of the float64 values is exactly 0 when their Bernstein polynomial
    equals r (checked in rational arithmetic); otherwise it is the tiny certified sup of
    the rounding residual, and a stated "0" fails.
    """
    if isinstance(reward, str):
        reward = parse_reward(reward)
    values = payload.get("values")
    if not isinstance(values, (list, tuple)) or not values:
        return ["values: missing or empty"]
    cert = certify(values, reward)
    fields = [("bias_bound", "bias"), ("variance_bound", "variance"), ("mse_bound", "mse")]
    failures = []
    tight = None
    for field, attr in fields:
        if field not in payload:
            continue
        br = getattr(cert, attr)
        if str(payload[field]).strip() == "inf":
            # an infinite sup is a proven claim only where certify proves it (alpha:a, a < 1/2)
            if not math.isinf(br.upper):
                failures.append(f"{field} = inf but the certified sup is finite: sup ∈ [{br.lower!r}, {br.upper!r}]")
            continue
        try:
            stated = _as_fraction(payload[field])
        except (ValueError, ZeroDivisionError):
            failures.append(f"{field}: {payload[field]!r} is not a decimal number")
            continue
        up = Fraction(br.upper) if math.isfinite(br.upper) else None
        if up is None:
            failures.append(f"{field} = {payload[field]} but the certified sup is infinite")
            continue
        n_before = len(failures)
        if stated < up:
            if tight is None and stated >= Fraction(br.lower):
                tight = certify(values, reward, rel_gap=1e-8)
            br2 = getattr(tight, attr) if tight is not None else br
            if stated < Fraction(br2.upper):
                what = "exact-zero claim fails: the float64 values are not exactly unbiased; " if (
                    attr == "bias" and stated == 0) else ""
                failures.append(
                    f"{field} = {payload[field]} is below the certified bound: {what}"
                    f"sup ∈ [{br.lower!r}, {br.upper!r}] (witness p = {br.witness!r})"
                )
        elif stated > up * (1 + Fraction(rel_tol)):
            failures.append(
                f"{field} = {payload[field]} exceeds the certified upper bound {br.upper!r} "
                f"by more than rel_tol = {rel_tol:g}"
            )
        if len(failures) == n_before and stated > 0 and (stated - Fraction(br.lower)) > stated * Fraction(rel_tol):
            # the file's own tolerance: the stated bound within rel_tol of the certified lower
            # end (the value at the certified witness, ≤ the true sup), whatever certify's upper
            gap = float((stated - Fraction(br.lower)) / stated)
            failures.append(
                f"{field} = {payload[field]} is not within the file's bound_rel_tol = {rel_tol:g} of the "
                f"certified lower end {br.lower!r} of the sup (witness p = {br.witness!r}): relative gap {gap:.3g}"
            )
    if "bias_lower" in payload:
        try:
            lo = _as_fraction(payload["bias_lower"])
            if lo > Fraction(cert.bias.upper):
                failures.append(
                    f"bias_lower = {payload['bias_lower']} exceeds the certified upper bound {cert.bias.upper!r}"
                )
        except (ValueError, ZeroDivisionError):
            failures.append(f"bias_lower: {payload['bias_lower']!r} is not a decimal number")
    return failures
