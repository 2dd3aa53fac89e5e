"""Minimax level E*_K and minimax table (DESIGN §5, issue 4).

    E*_K = min over P of degree ≤ K with P(0) = 0 of sup_{p∈[0,1]} |P(p) − f(p)|,

f(p) = p·r(p); P = p·q with q (degree ≤ K − 1) the mean T of the minimax table.

Method
------
1. *Float64 Remez* (:mod:`coefgen.solvers._remez64`). Levelled-error barycentric
   formulation (Pachón–Trefethen) on the reference x_0 < … < x_K = 1: the interpolant of
   the values f(x_j) + (−1)^j h at the K + 1 reference points and 0 at p = 0 has degree
   ≤ K iff the barycentric leading-coefficient sum vanishes, which gives h in closed form.
   We solve it in the equivalent *q-form* (q = P/p interpolates (f(x_j) + σ_j h)/x_j at
   the K + 1 reference points and must have degree ≤ K − 1, i.e. Σ w_j q_j = 0): same
   polynomial, but without the node 0 squeezed next to x_0 ≈ 0.4/K², whose Lebesgue
   function (~800 at K = 1024) costs float64 digits. P is never expanded in a basis.
   Exchange: sample e = P − f on a sub-grid of every gap (plus a geometric fan towards 0),
   take one max-|e| per sign run (so signs alternate), keep K + 1 consecutive runs, and
   polish each extremum with safeguarded Newton on e' (Schneider–Werner derivative
   formulas, evaluated on the K midpoints of the reference so that the extrema are far
   from the nodes). p = 1 is kept when it is the largest point of its run.
2. *High-precision steps* (python-flint ``arb``, ball arithmetic). On the float reference
   (exact binary numbers) the levelled q is built as a ball polynomial in u = 2p − 1
   (``arb_poly`` interpolation in C: Q = A + h·B with A, B the interpolants of r(x_j) and
   σ_j/x_j at u_j = 2x_j − 1, h fixed by the vanishing u^K coefficient, q(p) = Q(2p − 1)).
   Monomials in u on [−1, 1] lose ≈ 1.7 bits per degree in the Newton interpolation (in p
   on [0, 1]: ≈ 2.6, which cost 1.5x the precision and ~1.4x the time), so the working
   precision is ≈ 1.8K + 3.3(2·digits + log10(1/E) + 20) + 64 bits; ball arithmetic
   accounts for every lost bit (the precision is raised when a sign is undecided or the
   balls dominate the bracket). One Newton step on e' per reference point gives the
   critical points of this P; they become the reference of the next levelled step
   (quadratic convergence: two steps give 18–24 digits at K = 1024–2048 and 22–40 for K ≤ 256).
   Points are rounded to ≈ 3.3(digits + 15) + 96 bits, which keeps the C multipoint
   evaluations cheap.
3. *Bracket* for the final P (defined exactly: levelled interpolant on an exact
   reference). Evaluate e, e', e'' at every c_j in ball arithmetic (q, q', q'' by multipoint
   evaluation), and ||P||_[0,1] ≤ Λ·max |P(τ_i)| over the K + 1 first-kind Chebyshev points
   τ_i (Rivlin: Λ ≤ (2/π) log(K+1) + 1; we use twice that; the float64 rounding of τ_i is
   absorbed by Markov's inequality, see :func:`_pnorm_bound`).

   *lower*: the e(c_j) and e(1) are certified nonzero with alternating signs, so by de la
   Vallée Poussin (Haar system {p, …, p^K} on (0, 1]) E*_K ≥ min_j |e(c_j)|, |e(1)|.

   *upper*: (a) Zero count. For kl, p·e''(p) = p·P''(p) − 1 is a nonzero polynomial of
   degree ≤ K − 1; for alpha:a, e'' = P'' − a p^(a−2) is a generalised polynomial with K
   distinct real exponents (a − 2 ∉ {0..K−2}); for poly rewards of degree ≥ K, e'' has
   K − 1 + s sign changes in its coefficients with s the sign changes of f'' above degree
   K − 2 (we require s = 0). By Descartes' rule of signs (Laguerre's extension to real
   exponents) e'' has ≤ K − 1 zeros in (0, 1], hence (Rolle) e' has ≤ K zeros there.
   (b) Localisation. V. A. Markov: ||P'''|| ≤ 8·T_K'''(1)·||P|| =: B3; with F3 a bound of
   |f'''| near c_j, e'' varies by ≤ (B3 + F3)ρ on J_j = [c_j − ρ_j, c_j + ρ_j], where ρ_j is
   chosen so that this is ≤ |e''(c_j)|/2. If |e'(c_j)| < ρ_j·m2 (m2 = min_J |e''|), e' is
   strictly monotone on J_j and has exactly one zero z_j there, |z_j − c_j| ≤ δ_j =
   |e'(c_j)|/m2. The J_j are disjoint, so these are *all* K zeros of e' in (0, 1].
   (c) sup_[0,1] |e| is attained at 0 (e(0) = 0), at 1, or at some z_j, and by Taylor at
   z_j, |e(z_j)| ≤ |e(c_j)| + M2·δ_j²/2 (M2 = max_J |e''|). So
   upper = max(|e(1)|, max_j |e(c_j)| + M2 δ_j²/2) ≥ sup|e| ≥ E*_K.
   Every quantity is an arb ball; the f''' bounds come from the reward's float64 bounds
   (doubled), so the bracket is proven up to the correctness of arb and of those bounds.

   digits = floor(−log10((upper − lower)/upper)).
4. *Table*: the Bernstein coefficients of q (degree K − 1) from its monomial balls in p by the
   U-statistic identity β_c = Σ_{k≤c} a_k C(c,k)/C(K−1,k) (one Taylor shift); the levelled
   step is redone at K more bits for the p-monomials, and the precision grows ×1.5 until
   every coefficient's ball is narrow enough for 34 significant digits. They are the
   coefficients of the exact P whose level is certified; what float64 rounding does to
   them is the certifier's business (the entries grow fast with K).
5. Polynomial rewards of degree ≤ K − 1: level 0, table = exact U-statistic table.
   Polynomial rewards of higher degree whose f'' has sign changes above degree K − 2: the
   zero count is unproven and a CheckError is raised (no shipped divergence needs this).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from dataclasses import dataclass
from fractions import Fraction

import flint
import mpmath
import numpy as np
from flint import arb, arb_poly

from ..bernstein import u_statistic_table
from ..errors import CheckError, InputError
from ..rewards import KL, Alpha, Poly, Reward, format_exact, parse_reward
from . import _remez64

_DEBUG = bool(os.environ.get("COEFGEN_DEBUG"))

__all__ = ["Level", "minimax_level", "minimax_table", "default_digits", "level_estimate"]


@dataclass(frozen=True)
class Level:
    divergence: str
    K: int
    lower: mpmath.mpf  # de la Vallée Poussin: proven ≤ E*_K
    upper: mpmath.mpf  # proven ≥ sup|P − f| of the final P, hence ≥ E*_K
    digits: int  # significant digits the bracket proves
    reference: tuple  # K + 1 alternation points (mpf), ascending
    level: str  # decimal string of E*_K: the midpoint rounded to `digits` digits, or more so that
    #             lower <= level <= upper holds exactly (format_level)


# K^2 x (digits + 17): a bound on the work of a proven level, whose time grows with it (measured on one
# core: K = 1024: 4 s at the default digits, 6.7 s at 40; K = 2048: 23 s at the default, 59 s at 54);
# the cap is ~1 min, 54 digits at K = 2048 (every K <= 1024 may ask for the CLI's 200).
MAX_LEVEL_WORK = 3.0e8


def check_level_work(K: int, digits: int) -> None:
    """InputError naming MAX_LEVEL_WORK when K^2 x (digits + 17) exceeds it."""
    work = float(K) * K * (digits + 17)
    if work > MAX_LEVEL_WORK:
        most = int(MAX_LEVEL_WORK / (float(K) * K)) - 17
        raise InputError(f"{digits} proven digits at K = {K}: K^2 x (digits + 17) = {work:.3g} exceeds the cap "
                         f"MAX_LEVEL_WORK = {MAX_LEVEL_WORK:.3g} (~1 min); at K = {K} ask for at most {max(most, 1)} digits")


def default_digits(K: int) -> int:
    """Default proven digits: 20 up to K = 256, 12 from K = 1024 (16 in between)."""
    if K <= 256:
        return 20
    if K <= 512:
        return 16
    return 12


# ----------------------------------------------------------------------------------
# rewards in ball arithmetic


def _arb_frac(x: Fraction) -> arb:
    x = Fraction(x)
    return arb(x.numerator) / x.denominator


class _ArbReward:
    """f, f', f'' of a reward in arb, and the zero-count check of the method."""

    def __init__(self, reward: Reward, K: int):
        self.reward = reward
        self.K = K
        if isinstance(reward, KL):
            self.kind = "kl"
        elif isinstance(reward, Alpha):
            self.kind = "alpha"
            self.afrac = Fraction(reward.a)
        elif isinstance(reward, Poly):
            self.kind = "poly"
            self.coeffs = [Fraction(c) for c in reward.coefficients]
        else:  # pragma: no cover - future rewards
            raise InputError(f"minimax: no ball-arithmetic model for reward {reward.name!r}")

    @property
    def a(self) -> arb:
        """The exponent a as a ball built at the CURRENT working precision.

        a is an exact rational p/q; converting it once (at flint's default 53 bits) would
        freeze a ball of radius ~1e-16 around a non-dyadic a (0.6, 0.9, ...) that no later
        precision increase shrinks, so it is rebuilt from p and q at every use."""
        return _arb_frac(self.afrac)

    def zero_count_ok(self) -> bool:
        """True when e'' has ≤ K − 1 zeros in (0, 1] for every P of degree ≤ K."""
        K = self.K
        if self.kind == "kl":
            return True
        if self.kind == "alpha":
            e = self.afrac - 2
            return not (e.denominator == 1 and 0 <= e <= K - 2)
        # poly: f'' = Σ c_m (m+1) m p^(m−1); sign changes above degree K − 2
        high = [c * (m + 1) * m for m, c in enumerate(self.coeffs) if m - 1 >= K - 1 and c != 0]
        s = sum(1 for u, v in zip(high, high[1:]) if (u > 0) != (v > 0))
        return s == 0

    def fq(self, x: arb) -> arb:
        """f(x)/x = r(x)."""
        if self.kind == "kl":
            return x.log()
        if self.kind == "alpha":
            a = self.a
            return ((x ** (a - 1)) - 1) / (a - 1)
        out = arb(0)
        for c in reversed(self.coeffs):
            out = out * x + _arb_frac(c)
        return out

    def f(self, x: arb) -> arb:
        return x * self.fq(x)

    def f1(self, x: arb) -> arb:
        if self.kind == "kl":
            return x.log() + 1
        if self.kind == "alpha":
            a = self.a
            return (a * x ** (a - 1) - 1) / (a - 1)
        out = arb(0)
        for m in range(len(self.coeffs) - 1, -1, -1):
            out = out * x + _arb_frac(self.coeffs[m] * (m + 1))
        return out

    def f2(self, x: arb) -> arb:
        if self.kind == "kl":
            return 1 / x
        if self.kind == "alpha":
            a = self.a
            return a * x ** (a - 2)
        out = arb(0)
        for m in range(len(self.coeffs) - 1, 0, -1):
            out = out * x + _arb_frac(self.coeffs[m] * (m + 1) * m)
        return out

    def f3_bound(self, p0: float, p1: float) -> arb:
        """Upper bound of |f'''| on [p0, p1] (0 < p0 ≤ p1 ≤ 1), with a factor-2 margin."""
        b = self.reward.f_derivative_abs_bound(np.array([p0]), np.array([p1]), 3)
        return arb(float(b[0])) * 2


# ----------------------------------------------------------------------------------
# ball-arithmetic barycentric machinery (q-form: P = p·q)


def _to_arb(v) -> arb:
    if isinstance(v, arb):
        return v
    return arb(float(v)) if isinstance(v, (float, np.floating)) else arb(v)


class _Levelled:
    """Exact levelled interpolant on an exact reference X (ascending, X[-1] = 1).

    q = P/p is held as Q(u) = q(p), u = 2p − 1, an ``arb_poly`` in u (monomial coefficients as
    balls). Monomials in u on [−1, 1] lose ≈ 1.7 bits per degree in the Newton interpolation
    (monomials in p on [0, 1]: ≈ 2.6), and ball arithmetic accounts for every lost bit; the
    working precision is raised until the balls are narrow. All heavy work (interpolation,
    multipoint evaluation) runs in C. q'(p) = 2Q'(u), q''(p) = 4Q''(u)."""

    def __init__(self, fr: _ArbReward, X: list):
        self.X = X
        self.fr = fr
        n = len(X)
        U = [2 * x - 1 for x in X]  # exact: X are dyadic and the precision exceeds their mantissas
        Fq = [fr.fq(x) for x in X]
        S = [(arb(1) if j % 2 == 0 else arb(-1)) / X[j] for j in range(n)]
        A = arb_poly.interpolate(U, Fq, algorithm="newton")
        B = arb_poly.interpolate(U, S, algorithm="newton")
        K = n - 1
        ca, cb = A.coeffs(), B.coeffs()
        lead_a = ca[K] if len(ca) > K else arb(0)
        lead_b = cb[K] if len(cb) > K else arb(0)
        # degree ≤ K − 1 ⇔ the u^K coefficient of A + h·B vanishes
        self.h = -lead_a / lead_b
        Q = A + B * self.h
        coeffs = Q.coeffs()[:K]
        self.Q = arb_poly(coeffs)  # the exact u^K coefficient is 0 (its ball contains 0)
        self.Q1 = self.Q.derivative()
        self.Q2 = self.Q1.derivative()
        self.e_end = self.Q(arb(1)) - fr.f(arb(1))

    def p_monomials(self) -> arb_poly:
        """q as a polynomial in p: Q(2p − 1) (loses ≈ 2.6 bits per degree at the current precision)."""
        return self.Q(arb_poly([-1, 2]))

    def node_newton(self, bits: int = 192):
        """One Newton step on e' from every interior reference point.

        The new points are rounded to `bits` bits: short mantissas make the multipoint
        evaluations several times cheaper, and `bits` exceeds the accuracy needed."""
        X, fr = self.X[:-1], self.fr
        q, q1, q2 = self.eval_q(X, 2)
        out = []
        for j, x in enumerate(X):
            e1 = q[j] + x * q1[j] - fr.f1(x)
            e2 = 2 * q1[j] + x * q2[j] - fr.f2(x)
            out.append((x - e1 / e2).mid())
        with _prec(bits):
            return [(+v).mid() for v in out]

    def eval_q(self, pts, deriv: int):
        """q, q', q'' (derivatives in p) at points as balls (lists)."""
        U = [2 * x - 1 for x in pts]
        q = self.Q.evaluate(U, algorithm="iter")
        q1 = [2 * v for v in self.Q1.evaluate(U, algorithm="iter")] if deriv >= 1 else None
        q2 = [4 * v for v in self.Q2.evaluate(U, algorithm="iter")] if deriv >= 2 else None
        return q, q1, q2


def _markov3(K: int) -> int:
    """2^3·T_K'''(1) = 8·K²(K²−1)(K²−4)/15 (exact integer)."""
    return 8 * K * K * (K * K - 1) * (K * K - 4) // 15


class _prec:
    """Context manager: flint working precision in bits."""

    def __init__(self, bits: int):
        self.bits = int(bits)

    def __enter__(self):
        self.old = flint.ctx.prec
        flint.ctx.prec = self.bits

    def __exit__(self, *exc):
        flint.ctx.prec = self.old


def _arb_to_mpf(x: arb) -> mpmath.mpf:
    man, exp = x.man_exp()
    with mpmath.workprec(max(64, int(man).bit_length() + 8)):
        return mpmath.mpf(int(man)) * mpmath.mpf(2) ** int(exp)


def _pnorm_bound(lev: _Levelled, K: int) -> arb:
    """Proven bound of ||P||_[0,1].

    τ_i: the K + 1 first-kind Chebyshev points of [0, 1], for which the Lebesgue constant
    is Λ ≤ (2/π) log(K + 1) + 1 (Rivlin; we use twice that). We evaluate P at the float64
    roundings τ̃_i (|τ_i − τ̃_i| ≤ ε = 2^-52), which are cheap in the multipoint evaluation:
    |P(τ_i)| ≤ |P(τ̃_i)| + ε·||P'|| ≤ M̃ + 2εK²||P|| (Markov), so
    ||P|| ≤ Λ(M̃ + 2εK²||P||), i.e. ||P|| ≤ ΛM̃/(1 − 2ΛεK²)."""
    i = np.arange(K + 1)
    tau = [arb(float(v)) for v in (1 - np.cos(np.pi * (2 * i + 1) / (2 * (K + 1)))) / 2]
    qt, _, _ = lev.eval_q(tau, 0)
    pmax = arb(0)
    for j in range(K + 1):
        pmax = pmax.max(abs(tau[j] * qt[j]))
    lam = 2 * ((2 / arb.pi()) * arb(K + 1).log() + 1)
    eps = arb(2) ** -52
    den = 1 - 2 * lam * eps * K * K
    if not den > 0:  # pragma: no cover - only for absurd K
        raise CheckError("minimax: K too large for the ||P|| bound")
    return (lam * pmax / den).upper()


def _certify(lev: _Levelled, K: int, cbits: int):
    """Critical points, bracket [lower, upper] (arb), reference; see module docstring.

    Returns "precision" (a sign is undecided), ("step", c) (the critical points are not
    accurate enough for the localisation argument) or (lower, upper, reference, width)."""
    fr = lev.fr
    c = lev.node_newton(cbits)
    q, q1, q2 = lev.eval_q(c, 2)
    E, E1, E2 = [], [], []
    for i, x in enumerate(c):
        E.append(x * q[i] - fr.f(x))
        E1.append(q[i] + x * q1[i] - fr.f1(x))
        E2.append(2 * q1[i] + x * q2[i] - fr.f2(x))
    e_end = lev.e_end
    # signs and alternation
    vals = E + [e_end]
    sgn = []
    for v in vals:
        if v > 0:
            sgn.append(1)
        elif v < 0:
            sgn.append(-1)
        else:
            return "precision"  # undecided sign: more precision needed
    if any(sgn[i] == sgn[i + 1] for i in range(len(sgn) - 1)):
        raise CheckError("minimax: the reference does not alternate (Remez failed)")
    lower = abs(e_end).lower()
    width = abs(e_end).rad()
    for v in E:
        lower = lower.min(abs(v).lower())
        width = width.max(v.rad())
    cf = [float(x.mid()) for x in c]
    # cheap screen with a provisional ||P|| (max|f| + 2|h|), then the proven bound
    provisional = arb(float(np.max(np.abs(fr.reward.f(np.linspace(0, 1, 1001)))))) + 2 * abs(lev.h)
    for pnorm in (provisional, None):
        if pnorm is None:
            pnorm = _pnorm_bound(lev, K)
        B3 = arb(_markov3(K)) * pnorm
        upper = abs(e_end).upper()
        for j, x in enumerate(c):
            e2lo = abs(E2[j]).lower()
            if not e2lo > 0:
                return "precision"
            left = cf[j] - (cf[j - 1] if j > 0 else 0.0)
            right = (cf[j + 1] if j + 1 < len(cf) else 1.0) - cf[j]
            rmax = min(left, right) / 3
            # J_j = [c_j − ρ, c_j + ρ] ⊂ [c_j − rmax, c_j + rmax] (rmax ≤ c_j/3)
            F3 = fr.f3_bound((cf[j] - rmax) * (1 - 1e-12), min(1.0, (cf[j] + rmax) * (1 + 1e-12)))
            rho = e2lo / (2 * (B3 + F3))
            rho = rho.min(arb(rmax))
            rho = arb(rho.lower().mid())
            vary = rho * (B3 + F3)
            m2 = (e2lo - vary).lower()
            M2 = (abs(E2[j]).upper() + vary).upper()
            e1up = abs(E1[j]).upper()
            if not (e1up < rho * m2):
                return ("step", c)  # critical points not accurate enough: another step
            delta = e1up / m2
            bound = abs(E[j]).upper() + M2 * delta * delta / 2
            upper = upper.max(bound.upper())
    reference = [x for x in c] + [arb(1)]
    return lower, upper, reference, width


def _digits(lower: arb, upper: arb) -> int:
    gap = (upper - lower).upper()
    if not gap > 0:
        return 10**6
    rel = (gap / upper.lower()).upper()
    return int(math.floor(-float(rel.log().upper() / arb(10).log())))


def mpf_fraction(x) -> Fraction:
    """The exact value of a finite mpf (or float, int, Fraction) as a Fraction."""
    if isinstance(x, (Fraction, int)):
        return Fraction(x)
    if isinstance(x, float):
        return Fraction(x)
    if not isinstance(x, mpmath.mpf):
        raise TypeError(f"mpf_fraction: {type(x).__name__}")
    if not mpmath.isfinite(x):
        raise ValueError(f"mpf_fraction: {x}")
    sign, man, exp, _bc = x._mpf_  # the stored binary value, never rounded to the working precision
    man, exp = (-int(man) if sign else int(man)), int(exp)
    return Fraction(man * 2**exp) if exp >= 0 else Fraction(man, 2**-exp)


def decimal_digits(x: Fraction, digits: int, mode: str = "nearest") -> tuple[int, int]:
    """(n, e) with n·10^(e − digits + 1) = x rounded to `digits` significant digits, n of exactly
    `digits` digits (10^(digits−1) <= n < 10^digits), e the position of the leading digit.

    x > 0 exact; mode "nearest" (ties away from 0), "up" (n·10^… >= x) or "down" (<= x).
    Integer arithmetic only: no binary rounding between x and the digits."""
    x = Fraction(x)
    if x <= 0:
        raise ValueError("decimal_digits needs x > 0")
    e = len(str(x.numerator)) - len(str(x.denominator))  # 10^(e−1) <= x < 10^(e+1)
    if x < Fraction(10) ** e:
        e -= 1  # now 10^e <= x < 10^(e+1)
    y = x * Fraction(10) ** (digits - 1 - e)  # 10^(digits−1) <= y < 10^digits
    if mode == "nearest":
        n = math.floor(y + Fraction(1, 2))
    elif mode == "up":
        n = math.ceil(y)
    elif mode == "down":
        n = math.floor(y)
    else:  # pragma: no cover - internal
        raise ValueError(mode)
    if n >= 10**digits:  # carried into a new leading digit (n = 10^digits exactly)
        n //= 10
        e += 1
    return n, e


def decimal_text(n: int, e: int, fixed_always: bool = True, strip_zeros: bool = False) -> str:
    """The decimal of n·10^(e − len(n) + 1) (leading digit at position e): fixed notation
    (always, or like ``mpmath.nstr`` where min(−(len//3), −5) < e < len), else 'd.ddde±N'."""
    m = str(n)
    nd = len(m)
    if fixed_always or min(-(nd // 3), -5) < e < nd:
        if e < 0:
            m, split = "0" * (-e) + m, 1
        else:
            split = e + 1
            m += "0" * max(0, split - nd)
        head, tail = m[:split], m[split:]
        if strip_zeros:
            tail = tail.rstrip("0")
        return f"{head}.{tail or '0'}"
    tail = m[1:].rstrip("0") if strip_zeros else m[1:]
    return f"{m[0]}.{tail or '0'}e{e:+d}"


def decimal_round(x: Fraction, digits: int) -> str:
    """x >= 0 rounded to nearest with `digits` significant digits, fixed notation."""
    if x == 0:
        return "0"
    return decimal_text(*decimal_digits(x, digits, "nearest"))


def format_level(lo: Fraction, up: Fraction, digits: int) -> str:
    """The bracket's midpoint with `digits` significant digits, or more where that rounding would
    leave [lo, up] (issue 22): the stated level always lies inside its proven bracket, exactly."""
    lo, up = Fraction(lo), Fraction(up)
    if not 0 <= lo <= up:
        raise CheckError(f"minimax: malformed level bracket [{float(lo)!r}, {float(up)!r}]")
    if up == 0:
        return "0"
    mid = (lo + up) / 2
    n = max(1, digits)
    while True:
        s = decimal_round(mid, n)
        if lo <= Fraction(s) <= up:
            return s
        n += 1  # |mid − s| <= mid·10^(1−n)/2 → 0 while mid lies inside a bracket of positive width
        if n > 10_000:  # lo == up with a non-terminating... (impossible for binary lo = up; guard)
            raise CheckError("minimax: cannot state the level inside its bracket")


def _is_zero_level(reward: Reward, K: int) -> bool:
    d = reward.degree
    return reward.is_polynomial and d is not None and d <= K - 1


@functools.lru_cache(maxsize=64)
def _float_reference(name: str, K: int):
    """(reference, history) of the float64 Remez (:func:`_remez64.remez64`), cached per (reward, K)."""
    try:
        return _remez64.remez64(parse_reward(name), K)
    except RuntimeError as e:  # a reward the float64 Remez cannot start on: a failed computation, not a bug
        raise CheckError(f"minimax: the level of {name[:60]} at K={K} could not be computed ({e}); "
                         "no table or level is written") from None


LEVEL_ESTIMATE_DIGITS = 9  # significant digits of level_estimate (float64 Remez: ~12 correct)


def level_estimate(reward, K) -> float:
    """A float64 value meant to lie just below E*_K: |h| of the float64 Remez's last levelled
    reference (de la Vallée Poussin: |h| ≤ E*_K in exact arithmetic), lowered by 1e-9 relative for
    float rounding and rounded down to LEVEL_ESTIMATE_DIGITS digits. Not a proof: callers compare it
    with the certified bracket (``minimax_level(...).lower``) once that is known."""
    reward = _resolve(reward)
    K = _check_K(K)
    if _is_zero_level(reward, K):
        return 0.0
    x, _hist = _float_reference(reward.name, K)
    h = abs(float(_remez64.levelled(reward, np.asarray(x, dtype=float))[3])) * (1 - 1e-9)
    n, e = decimal_digits(Fraction(h), LEVEL_ESTIMATE_DIGITS, "down")
    return float(Fraction(n) * Fraction(10) ** (e - LEVEL_ESTIMATE_DIGITS + 1))


@functools.lru_cache(maxsize=256)
def _solve(name: str, K: int, digits: int):
    reward = parse_reward(name)
    fr = _ArbReward(reward, K)
    if not fr.zero_count_ok():
        raise CheckError(
            f"minimax: cannot certify the level of {name} at K={K} "
            "(f'' has sign changes above degree K-2, so the critical-point count is unproven)"
        )
    x64, _hist = _float_reference(name, K)
    cbits = int(3.33 * (digits + 15)) + 96  # mantissa of reference/critical points
    # working precision: digits asked + cancellation (f ~ 1 vs e ~ E) + guard bits
    E = abs(_hist[-1][0]) if _hist else 1e-3
    logE = max(0.0, -math.log10(max(E, 1e-300)))
    prec = int(3.33 * (2 * digits + logE + 20)) + 64 + int(1.8 * K)
    X = [arb(float(v)) for v in x64]
    with _prec(prec):
        # one levelled step in ball arithmetic on the float reference (quadratic gain)
        X = _Levelled(fr, X).node_newton(cbits) + [arb(1)]
    result = None
    for attempt in range(10):
        old = flint.ctx.prec
        flint.ctx.prec = prec
        try:
            lev = _Levelled(fr, X)
            cert = _certify(lev, K, cbits)
            if cert == "precision":
                prec = int(prec * 1.5)
                continue
            if isinstance(cert, tuple) and cert[0] == "step":
                if _DEBUG:
                    print(f"[minimax] {name} K={K} prec={prec}: extra levelled step", file=sys.stderr)
                X = cert[1] + [arb(1)]
                continue
            lower, upper, ref, width = cert
            d = _digits(lower, upper)  # inside the precision context
            if _DEBUG:
                print(f"[minimax] {name} K={K} prec={prec} digits={d} width/gap="
                      f"{float((width / (upper - lower).upper()).mid()):.2e}", file=sys.stderr)
            result = (lower, upper, ref, d, lev, prec)
            if d >= digits:
                break
            if width * 10 > upper - lower:
                prec = int(prec * 1.5)  # the balls, not the levelling, limit the bracket
            else:
                X = ref  # one more levelled step on the critical points
        finally:
            flint.ctx.prec = old
    if result is None:
        raise CheckError(f"minimax: could not certify the level of {name} at K={K}")
    if result[3] < digits:
        # never hand back a bracket narrower in digits than asked without saying so
        raise CheckError(
            f"minimax: the level of {name} at K={K} was certified to only {max(result[3], 0)} significant "
            f"digits, {digits} were requested (precision escalation stopped at {result[5]} bits)"
        )
    return result


def _resolve(reward) -> Reward:
    if isinstance(reward, Reward):
        return reward
    return parse_reward(reward)


def _check_K(K) -> int:
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)):
        raise InputError(f"K must be an integer, got {K!r}")
    K = int(K)
    if K < 2:
        raise InputError(f"K must be at least 2 for a minimax table, got {K}")
    return K


@functools.lru_cache(maxsize=512)
def _level_cached(name: str, K: int, digits):
    reward = parse_reward(name)
    D = default_digits(K) if digits is None else int(digits)
    if _is_zero_level(reward, K):
        zero = mpmath.mpf(0)
        return Level(name, K, zero, zero, D, (), "0")
    lower, upper, ref, d, _lev, prec = _solve(name, K, D)
    with _prec(prec):
        lo = _arb_to_mpf(lower)
        up = _arb_to_mpf(upper)
        refm = tuple(_arb_to_mpf(x.mid()) for x in ref)
    text = format_level(mpf_fraction(lo), mpf_fraction(up), d)
    return Level(name, K, lo, up, d, refm, text)


def minimax_level(reward, K, digits=None) -> Level:
    """Minimax level E*_K with a proven bracket (see the module docstring)."""
    reward = _resolve(reward)
    K = _check_K(K)
    if digits is not None:
        if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 1:
            raise InputError(f"digits must be a positive integer, got {digits!r}")
        digits = int(digits)
        check_level_work(K, digits)
    return _level_cached(reward.name, K, digits)


# ----------------------------------------------------------------------------------
# table


def _bernstein_coefficients(lev: _Levelled, K: int):
    """Bernstein coefficients (degree n = K − 1) of q from its monomial balls a_k in p:
    β_c = Σ_{k ≤ c} a_k C(c, k)/C(n, k) (the U-statistic identity of DESIGN §2), computed as
    C(n, c)·β_c = [x^c] Σ_k a_k x^k (1 + x)^(n − k) = [z^(n − c)] R(z + 1), R(z) = Σ_k a_k z^(n − k)
    (one Taylor shift in C; every term is a positive multiple of an a_k, as in the sum)."""
    a = lev.p_monomials().coeffs()
    a = a + [arb(0)] * (K - len(a))
    n = K - 1
    shifted = arb_poly(a[::-1])(arb_poly([1, 1])).coeffs()
    shifted = shifted + [arb(0)] * (K - len(shifted))
    return [shifted[n - c] / math.comb(n, c) for c in range(K)]


def minimax_table(reward, K):
    """(values float64 t_1..t_K, values_exact ≥ 34-digit strings, Level) of the minimax table."""
    reward = _resolve(reward)
    K = _check_K(K)
    level = minimax_level(reward, K)
    if _is_zero_level(reward, K):
        exact = u_statistic_table(reward.poly_coefficients, K)
        return np.array([float(v) for v in exact]), [format_exact(v) for v in exact], level
    D = default_digits(K)
    _lo, _up, _ref, _d, lev, prec = _solve(reward.name, K, D)
    fr = lev.fr
    nodes = lev.X
    sig_digits = 34
    p = prec + int(1.0 * K)  # the p-monomials of q lose ≈ 2.6 bits per degree (the level's Q in u: ≈ 1.7)
    for _ in range(8):
        with _prec(p):
            lv = _Levelled(fr, nodes)
            coeffs = _bernstein_coefficients(lv, K)
            ok = all(
                cb.is_finite() and (cb.rad() <= abs(cb).lower() * arb(10) ** (-(sig_digits + 2)))
                for cb in coeffs
            )
            if ok:
                strings = [_arb_str(cb, sig_digits) for cb in coeffs]
                break
        p = int(p * 1.5)
    else:
        raise CheckError(f"minimax table for {reward.name} at K={K}: precision escalation failed")
    values = np.array([float(mpmath.mpf(v)) for v in strings])
    return values, strings, level


def _arb_str(x: arb, digits: int) -> str:
    """Decimal string of the ball's midpoint with `digits` significant digits."""
    m = _arb_to_mpf(x.mid())
    with mpmath.workprec(int(flint.ctx.prec) + 64):
        return mpmath.nstr(m, digits, strip_zeros=False, min_fixed=-mpmath.inf, max_fixed=mpmath.inf)
