"""``coefgen verify``: re-read table files and re-prove every claim they make.

A table file: schema and sha256 (runtime loader), then the certified brackets recomputed
from the stored float64 values and compared with the stated ones (certify.check_claims).
A table-set ``manifest.json``: every listed file must exist with the listed sha256, and every
table in it is verified as above (once per table, whatever its number of formats).
"""

from __future__ import annotations

import hashlib
import json
import os

from .errors import InputError
from .payload import MANIFEST_SCHEMA
from .rewards import parse_reward
from .runtime import TableError, load


def verify_payload(payload: dict, source: str) -> list[str]:
    """One line per failed claim of an intact payload (empty: every claim holds)."""
    from .certify import check_claims

    try:
        reward = parse_reward(payload["divergence"])
    except InputError as e:
        return [f"{source}: {e}"]
    if payload.get("certified") is False:
        return [f"{source}: table states it is not certified"]
    tol = payload.get("bound_rel_tol", 1e-6)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        return [f"{source}: bound_rel_tol must be a number in (0, 1), got {tol!r}"]
    lines = stated_bracket_failures(payload, float(tol)) + check_claims(payload, reward, rel_tol=float(tol))
    return [f"{source}: {line}" for line in lines]


def stated_bracket_failures(payload: dict, tol: float) -> list[str]:
    """Every bracket the file states is as tight as its own bound_rel_tol: (bound − lower)/bound ≤ tol
    (issue 13.3; the certified side is checked by certify.check_claims)."""
    from fractions import Fraction

    from .compiler import bracket_rel_gaps

    gaps = bracket_rel_gaps(payload)
    return [
        f"{field}: stated bracket has relative gap {float(gap):.3g} > the file's bound_rel_tol = {tol:g}"
        for field, gap in gaps.items()
        if gap > Fraction(tol)
    ]


def _manifest(path: str):
    """The manifest document if ``path`` is a table-set manifest, else None."""
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == MANIFEST_SCHEMA else None


def verify_manifest(path: str, doc: dict) -> list[str]:
    """Every file of a manifest present with its sha256; every table's claims re-proven."""
    base = os.path.dirname(os.path.abspath(path))
    failures, seen = [], set()
    records = sorted(doc.get("files", []), key=lambda r: (r.get("format") != "json", r.get("path", "")))
    for rec in records:
        rel = rec.get("path", "?")
        full = os.path.join(base, rel)
        try:
            with open(full, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            failures.append(f"{full}: listed in {path} but missing")
            continue
        if digest != rec.get("sha256"):
            failures.append(f"{full}: bytes differ from the sha256 listed in {path}")
            continue
        if rec.get("format") in ("json", "npz") and rec.get("table_id") not in seen:
            seen.add(rec.get("table_id"))
            failures += verify_file(full)
    return failures


def verify_file(path: str) -> list[str]:
    """One line per failed check of a table file or a table-set manifest."""
    doc = _manifest(path)
    if doc is not None:
        return verify_manifest(path, doc)
    try:
        table = load(path)
    except TableError as e:
        return [str(e)]
    return verify_payload(table.payload, path)
