"""Rewards r(p) = φ'(p) of DESIGN §3, parsed from their canonical names.

Every reward knows r(p) in numpy and mpmath, f(p) = p·r(p) (the function whose weighted
approximation the solvers perform, f(0) = 0), derivative bounds of f for certification,
and, for polynomial rewards, its exact monomial coefficients r(p) = Σ_m a_m p^m.

Names: ``kl``, ``alpha:<a>`` (a > 0; ``alpha:1`` is ``kl``), ``euclidean`` (= alpha:2),
``poly:<c0>,<c1>,…`` with exact decimals or p/q.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from .errors import InputError
from .spec_numbers import MAX_EXPONENT, MAX_NUMBER_CHARS, parse_exact, show, spec_number  # noqa: F401 (re-exported)

VALID_FORMS = "valid forms: kl, euclidean, alpha:<a> with a > 0 (e.g. alpha:0.5, alpha:3, alpha:1/3), poly:<c0>,<c1>,... (e.g. poly:0,1 or poly:1/2,-3)"

MAX_NAME_CHARS = 140_000   # a whole divergence name (2048 coefficients of up to 64 characters)
MAX_POLY_TERMS = 2_048     # poly coefficients (degree <= K-1, K <= 2048)
ALPHA_RANGE = (Fraction(1, 100), Fraction(1000))        # alpha:<a>, a in [0.01, 1000]
POLY_COEFF_RANGE = (Fraction(1, 10**12), Fraction(10**12))  # |c| of a nonzero poly coefficient


def format_exact(x: Fraction) -> str:
    """Canonical string of a rational: an integer, a terminating decimal, or p/q."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    den = x.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{x.numerator}/{x.denominator}"
    digits = max(twos, fives)
    scaled = x * 10**digits
    assert scaled.denominator == 1
    sign = "-" if scaled < 0 else ""
    s = str(abs(scaled.numerator)).rjust(digits + 1, "0")
    return f"{sign}{s[:-digits]}.{s[-digits:]}"


@dataclass(frozen=True)
class Reward:
    """A reward r(p). Subclasses implement the numerics; ``name`` is canonical."""

    name: str

    # --- description -------------------------------------------------------------
    @property
    def formula(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_polynomial(self) -> bool:
        return self.poly_coefficients is not None

    @property
    def mse_sup_infinite(self) -> bool:
        """sup_p m(p) = ∞ for every table: p·r(p)² → ∞ as p → 0 (alpha:a with a < 1/2 only)."""
        return False

    @property
    def poly_coefficients(self) -> tuple[Fraction, ...] | None:
        """Exact monomial coefficients a_0..a_d of r(p) = Σ a_m p^m, or None."""
        return None

    @property
    def degree(self) -> int | None:
        c = self.poly_coefficients
        return None if c is None else len(c) - 1

    # --- values ------------------------------------------------------------------
    def r(self, p):  # pragma: no cover - abstract
        """r(p) for a float64 array (p > 0 where r is singular at 0)."""
        raise NotImplementedError

    def r_mp(self, p):  # pragma: no cover - abstract
        """r(p) for an mpmath number p > 0, at the current mpmath precision."""
        raise NotImplementedError

    def f(self, p):
        """f(p) = p·r(p), float64 array, with f(0) = 0."""
        p = np.asarray(p, dtype=float)
        out = np.zeros_like(p)
        pos = p > 0
        out[pos] = p[pos] * self.r(p[pos])
        return out

    def f_mp(self, p):
        """f(p) = p·r(p) in mpmath, f(0) = 0."""
        p = mpmath.mpf(p)
        return mpmath.mpf(0) if p == 0 else p * self.r_mp(p)

    def f_derivative(self, p, k: int):
        """k-th derivative of f = p·r(p) (k = 1, 2, 3) for a float64 array p > 0."""
        raise NotImplementedError  # pragma: no cover - abstract

    def f_abs_bound(self, a: float) -> float:
        """Proven upper bound of sup_{0 ≤ p ≤ a} |f(p)| (used near p = 0)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def f_derivative_abs_bound(self, p0, p1, k: int):
        """Proven upper bound of sup_{p0 ≤ p ≤ p1} |f^(k)(p)| (arrays p0 ≤ p1, p0 > 0).

        For kl and alpha the derivatives are monotone in p, so the sup sits at an end."""
        d0 = np.abs(self.f_derivative(p0, k))
        d1 = np.abs(self.f_derivative(p1, k))
        return np.maximum(d0, d1) * (1 + 1e-12) + 1e-300

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class KL(Reward):
    """r(p) = log p (generator p log p − p); f(p) = p log p."""

    name: str = "kl"

    @property
    def formula(self) -> str:
        return "log(p)"

    def r(self, p):
        return np.log(np.asarray(p, dtype=float))

    def r_mp(self, p):
        return mpmath.log(p)

    def f_derivative(self, p, k):
        p = np.asarray(p, dtype=float)
        if k == 1:
            return np.log(p) + 1.0
        if k == 2:
            return 1.0 / p
        if k == 3:
            return -1.0 / p**2
        raise ValueError(k)

    def f_abs_bound(self, a):
        # p|log p| is increasing on [0, 1/e], and ≤ 1/e everywhere on [0, 1].
        a = float(a)
        if a <= 0:
            return 0.0
        if a >= math.exp(-1):
            return math.exp(-1) * (1 + 1e-15)
        return a * abs(math.log(a)) * (1 + 1e-14)


@dataclass(frozen=True)
class Alpha(Reward):
    """r(p) = (p^(a−1) − 1)/(a − 1), a > 0, a ≠ 1; f(p) = (p^a − p)/(a − 1)."""

    name: str = ""
    a: Fraction = Fraction(2)

    @property
    def formula(self) -> str:
        return f"(p^(a-1) - 1)/(a - 1), a = {format_exact(self.a)}"

    @property
    def mse_sup_infinite(self) -> bool:
        return 2 * self.a < 1  # p·r² ~ p^(2a−1)/(1−a)²

    @property
    def poly_coefficients(self):
        a = self.a
        if a.denominator == 1 and a >= 2:
            n = int(a) - 1  # r = (p^n − 1)/n
            coeffs = [Fraction(0)] * (n + 1)
            coeffs[0] -= Fraction(1, n)
            coeffs[n] += Fraction(1, n)
            return tuple(coeffs)
        return None

    def r(self, p):
        a = float(self.a)
        p = np.asarray(p, dtype=float)
        return (p ** (a - 1) - 1.0) / (a - 1)

    def r_mp(self, p):
        a = mpmath.mpf(self.a.numerator) / self.a.denominator
        return (mpmath.power(p, a - 1) - 1) / (a - 1)

    def f_derivative(self, p, k):
        a = float(self.a)
        p = np.asarray(p, dtype=float)
        if k == 1:
            return (a * p ** (a - 1) - 1.0) / (a - 1)
        if k == 2:
            return a * p ** (a - 2)
        if k == 3:
            return a * (a - 2) * p ** (a - 3)
        raise ValueError(k)

    def f_abs_bound(self, a_):
        a = float(self.a)
        a_ = min(float(a_), 1.0)
        if a_ <= 0:
            return 0.0
        # |p^a − p|/|a − 1| ≤ max(p^a, p)/|a − 1|, both increasing in p.
        return max(a_**a, a_) / abs(a - 1) * (1 + 1e-14)


@dataclass(frozen=True)
class Poly(Reward):
    """r(p) = Σ_m c_m p^m with exact rational coefficients."""

    name: str = ""
    coefficients: tuple[Fraction, ...] = (Fraction(0),)

    @property
    def formula(self) -> str:
        terms = []
        for m, c in enumerate(self.coefficients):
            if c == 0:
                continue
            cs = format_exact(c)
            terms.append(cs if m == 0 else f"{cs}*p" if m == 1 else f"{cs}*p^{m}")
        return " + ".join(terms) if terms else "0"

    @property
    def poly_coefficients(self):
        return self.coefficients

    def r(self, p):
        p = np.asarray(p, dtype=float)
        out = np.zeros_like(p)
        for c in reversed(self.coefficients):
            out = out * p + float(c)
        return out

    def r_mp(self, p):
        out = mpmath.mpf(0)
        for c in reversed(self.coefficients):
            out = out * p + mpmath.mpf(c.numerator) / c.denominator
        return out

    def _f_coeffs(self, k):
        # f(p) = Σ c_m p^(m+1); its k-th derivative's coefficients, as floats.
        coeffs = [Fraction(0)] + list(self.coefficients)
        for _ in range(k):
            coeffs = [j * coeffs[j] for j in range(1, len(coeffs))] or [Fraction(0)]
        return [float(c) for c in coeffs]

    def f_derivative(self, p, k):
        p = np.asarray(p, dtype=float)
        out = np.zeros_like(p)
        for c in reversed(self._f_coeffs(k)):
            out = out * p + c
        return out

    def f_derivative_abs_bound(self, p0, p1, k):
        # |Σ a_j p^j| ≤ Σ |a_j| p1^j for 0 ≤ p ≤ p1.
        p1 = np.asarray(p1, dtype=float)
        out = np.zeros_like(p1)
        for c in reversed(self._f_coeffs(k)):
            out = out * p1 + abs(c)
        return out * (1 + 1e-12) + 1e-300

    def f_abs_bound(self, a):
        a = min(float(a), 1.0)
        return sum(abs(float(c)) * a ** (m + 1) for m, c in enumerate(self.coefficients)) * (1 + 1e-14)


def parse_reward(name: str) -> Reward:
    """Parse a canonical or alias name into a Reward; InputError (exit 2) if malformed."""
    if not isinstance(name, str):
        raise InputError(f"divergence must be a string, got {show(name)}; {VALID_FORMS}")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"divergence {show(name)} is longer than the {MAX_NAME_CHARS}-character limit")
    s = name.strip()
    low = s.lower()
    if low == "kl":
        return KL()
    if low == "euclidean":
        return Alpha(name="euclidean", a=Fraction(2))
    if low.startswith("alpha:"):
        arg = s[len("alpha:"):]
        try:
            a = parse_exact(arg)
        except ValueError as e:
            raise InputError(f"divergence {show(name)}: alpha parameter is not a number ({e}); {VALID_FORMS}") from None
        if a <= 0:
            raise InputError(
                f"divergence {show(name)} is inadmissible: p*r(p) does not tend to 0 as p -> 0 for a <= 0 "
                f"(no table has bounded weighted bias); {VALID_FORMS}"
            )
        lo, hi = ALPHA_RANGE
        if not lo <= a <= hi:
            raise InputError(f"divergence {show(name)}: alpha parameter outside the supported range "
                             f"[{format_exact(lo)}, {format_exact(hi)}]")
        if a == 1:
            return KL()
        return Alpha(name=f"alpha:{format_exact(a)}", a=a)
    if low.startswith("poly:"):
        arg = s[len("poly:"):]
        parts = arg.split(",")
        if not arg.strip() or any(not x.strip() for x in parts):
            raise InputError(f"divergence {show(name)}: poly needs comma-separated coefficients c0,c1,...; {VALID_FORMS}")
        if len(parts) > MAX_POLY_TERMS:
            raise InputError(f"divergence {show(name)}: {len(parts)} coefficients; at most {MAX_POLY_TERMS} "
                             f"(degree <= K-1 with K <= {MAX_POLY_TERMS})")
        try:
            coeffs = [parse_exact(x) for x in parts]
        except ValueError as e:
            raise InputError(f"divergence {show(name)}: {e}; {VALID_FORMS}") from None
        lo, hi = POLY_COEFF_RANGE
        for c in coeffs:
            if c and not lo <= abs(c) <= hi:
                raise InputError(f"divergence {show(name)}: coefficient {format_exact(c)[:40]} outside the supported "
                                 f"range (0 or 1e-12 <= |c| <= 1e12: float64 certification)")
        while len(coeffs) > 1 and coeffs[-1] == 0:
            coeffs.pop()
        canon = "poly:" + ",".join(format_exact(c) for c in coeffs)
        return Poly(name=canon, coefficients=tuple(coeffs))
    raise InputError(f"unknown divergence {show(name)}; {VALID_FORMS}")
