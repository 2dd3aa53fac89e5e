"""Errors that the CLI turns into a one-line message and an exit code.

``InputError`` (exit 2): the request is malformed or impossible (bad name, K too small).
``CheckError`` (exit 1): the request was fine but a check failed (a bound missed its
target, a verified file lies, a table set differs from what would be built).
"""

from __future__ import annotations


class CoefgenError(Exception):
    """Base class: ``str(err)`` is the one-line message, ``exit_code`` the CLI status."""

    exit_code = 2


class InputError(CoefgenError, ValueError):
    """Bad input: exit 2."""

    exit_code = 2


class CheckError(CoefgenError):
    """A failed check: exit 1."""

    exit_code = 1
