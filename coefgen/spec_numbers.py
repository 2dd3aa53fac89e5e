"""Numbers written inside names and specs (``alpha:0.5``, ``poly:1/2,3``, ``zipf:1.5:10``).

Stdlib only (imported by the numpy-only modules too). ASCII digits only — ``int``/``float``
also accept Arabic-Indic or full-width digits — with caps checked before converting, so a
13-character ``1e99999999`` costs nothing.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import InputError

# ASCII digits only: str.isdigit/int() also accept e.g. Arabic-Indic or full-width digits.
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE]([+-]?[0-9]+))?", re.ASCII)
_RATIO = re.compile(r"[+-]?[0-9]+/[0-9]+", re.ASCII)
MAX_NUMBER_CHARS = 64      # one number of a name (alpha:<a>, a poly coefficient)
MAX_EXPONENT = 30          # |decimal exponent| of a number as written, checked before converting


def show(text, limit: int = 80) -> str:
    """``repr(text)`` for a one-line error: at most ``limit`` characters, the rest elided."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def parse_exact(text: str) -> Fraction:
    """An exact decimal (``0.25``, ``-3``, ``1e-3``) or ratio ``p/q`` as a Fraction.

    ASCII digits only; at most 64 characters; a decimal exponent within ±30 (checked before
    converting, so ``1e99999999`` costs nothing)."""
    s = text.strip()
    if len(s) > MAX_NUMBER_CHARS:
        raise ValueError(f"{show(text)} is longer than {MAX_NUMBER_CHARS} characters")
    m = _DECIMAL.fullmatch(s)
    if m is None and not _RATIO.fullmatch(s):
        raise ValueError(f"{show(text)} is not an exact decimal or p/q (ASCII digits)")
    if "/" in s:
        num, den = s.split("/")
        if int(den) == 0:
            raise ValueError(f"{show(text)} has a zero denominator")
        return Fraction(int(num), int(den))
    if m.group(4) is not None and abs(int(m.group(4))) > MAX_EXPONENT:
        raise ValueError(f"{show(text)}: exponent outside ±{MAX_EXPONENT}")
    return Fraction(s)


def spec_number(text, what: str, where: str, *, integer: bool = False):
    """A number inside a spec string (``zipf:1.5:10``) by the rules of ``parse_exact`` (ASCII
    digits, ≤ 64 characters, exponent within ±30) as a float, or an int with ``integer``;
    InputError naming ``where`` and ``what`` otherwise."""
    try:
        x = parse_exact(str(text))
    except ValueError as e:
        raise InputError(f"{where}: {what}: {e}") from None
    if integer:
        if x.denominator != 1:
            raise InputError(f"{where}: {what} must be an integer, got {show(text)}")
        return int(x)
    return float(x)
