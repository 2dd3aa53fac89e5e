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
# Numbers read from files (a table's values_exact, bounds, lowers, minimax level and bracket,
# witnesses): the same parser, with limits wide enough for every float64 written with 30+ digits
# and for the exact p/q of any table coefgen can write (Python's own int-to-text limit is 4300
# digits, so the compiler cannot write longer integers), checked before converting.
MAX_FILE_NUMBER_CHARS = 100       # a decimal in a file (float64 at 30+ significant digits: ~40)
MAX_FILE_EXPONENT = 400           # |exponent| of a decimal in a file (float64: 1e-324 .. 1e308)
MAX_FILE_RATIO_DIGITS = 4_300     # digits of each of p and q of an exact p/q in a file


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
    return _parse(text, s, MAX_NUMBER_CHARS, MAX_EXPONENT, MAX_NUMBER_CHARS)


def parse_file_number(text) -> Fraction:
    """A number read from a file (table fields such as ``values_exact``, ``bias_bound``,
    ``minimax_level_bracket``) as a Fraction, by the same grammar as ``parse_exact`` but exact
    text (no surrounding blanks) and the file limits: a decimal of at most
    MAX_FILE_NUMBER_CHARS characters with |exponent| <= MAX_FILE_EXPONENT, or p/q with at most
    MAX_FILE_RATIO_DIGITS digits each. The caps are checked before any conversion, so
    ``1e-99999999`` or a megabyte of digits costs nothing. ValueError (one line) otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{show(text, 40)} is not a decimal string")
    if "/" in text:
        return _parse(text, text, 2 * MAX_FILE_RATIO_DIGITS + 2, MAX_FILE_EXPONENT, MAX_FILE_RATIO_DIGITS)
    return _parse(text, text, MAX_FILE_NUMBER_CHARS, MAX_FILE_EXPONENT, MAX_FILE_NUMBER_CHARS)


def _parse(text, s: str, max_chars: int, max_exponent: int, max_part: int) -> Fraction:
    """parse_exact's grammar with the given caps (``s``: the text to parse)."""
    if len(s) > max_chars:
        raise ValueError(f"{show(text)} is longer than {max_chars} characters")
    m = _DECIMAL.fullmatch(s)
    if m is None and not _RATIO.fullmatch(s):
        raise ValueError(f"{show(text)} is not an exact decimal or p/q (ASCII digits)")
    if "/" in s:
        num, den = s.split("/")
        if max(len(num.lstrip("+-")), len(den)) > max_part:
            raise ValueError(f"{show(text)}: p or q has more than {max_part} digits")
        if int(den) == 0:
            raise ValueError(f"{show(text)} has a zero denominator")
        return Fraction(int(num), int(den))
    exp = m.group(4)
    if exp is not None and (len(exp.lstrip("+-")) > 6 or abs(int(exp)) > max_exponent):
        raise ValueError(f"{show(text)}: exponent outside ±{max_exponent}")
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
