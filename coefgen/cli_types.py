"""Strict click parameter types (issue 20.14): click's INT and FLOAT call int()/float(), which
also read Arabic-Indic or full-width digits (``--K ٨``) and underscores (``--K 1_0``). These
read ASCII only, by the grammar of coefgen.spec_numbers (caps checked before converting)."""

from __future__ import annotations

import re

import click

_INT = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)
MAX_INT_CHARS = 19  # sign and 18 digits: every integer option of coefgen is far below 10^18


class StrictInt(click.ParamType):
    """An integer written with ASCII digits (optional sign), at most 18 digits."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if not _INT.fullmatch(text):
            self.fail(f"{text[:40]!r} is not a valid integer (ASCII digits, at most 18)", param, ctx)
        return int(text)


class StrictFloat(click.ParamType):
    """A number by spec_numbers.parse_exact's grammar (ASCII, <= 64 characters, exponent within ±30)."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        from .spec_numbers import parse_exact

        try:
            return float(parse_exact(str(value)))
        except ValueError as e:
            self.fail(str(e), param, ctx)


ASCII_INT = StrictInt()
ASCII_FLOAT = StrictFloat()
