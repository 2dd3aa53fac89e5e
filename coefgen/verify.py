"""``coefgen verify``: re-read table files and re-prove every claim they make.

A table file: schema and sha256 (runtime loader), then the certified brackets recomputed
from the stored float64 values and compared with the stated ones (certify.check_claims).
Every other field is checked for consistency with the values and with itself
(coefgen.consistency: values_exact, estimator, parameters, witness, lower bounds, minimax
level and bracket).
A table-set ``manifest.json``: every listed path must be a relative path inside the set's
directory naming a regular file (no ``..``, no absolute path, no symlink, no device; at most
64 MiB) with the listed sha256, and every table in it is verified as above (once per table,
whatever its number of formats). A malformed manifest is bad input (InputError, exit 2).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat

from .errors import InputError
from .payload import MANIFEST_SCHEMA, MAX_FILE_BYTES, MAX_MANIFEST_JSON_VALUES, parse_json
from .rewards import parse_reward
from .runtime import TableError, load, read_regular
from .writers import short


def verify_payload(payload: dict, source: str) -> list[str]:
    """One line per failed claim of an intact payload (empty: every claim holds).

    A loo/mean table states the claims of the (K−1)-table the trainer runs: it must be exactly
    that table padded (``baseline_failures``), and the claims are re-proved on it."""
    from .baseline import baseline_failures, effective_payload
    from .certify import check_claims

    from .consistency import number_failures

    bad_numbers = number_failures(payload)  # the file-number caps, before any conversion (issue 20.4)
    if bad_numbers:
        return [f"{source}: {line}" for line in bad_numbers]
    structural = baseline_failures(payload)
    if structural:
        return [f"{source}: {line}" for line in structural]
    payload = effective_payload(payload)
    try:
        reward = parse_reward(payload["divergence"])
    except InputError as e:
        return [f"{source}: {e}"]
    if payload.get("certified") is False:
        return [f"{source}: table states it is not certified"]
    tol = payload.get("bound_rel_tol", 1e-6)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        return [f"{source}: bound_rel_tol must be a number in (0, 1), got {tol!r}"]
    from .consistency import consistency_failures

    lines = stated_bracket_failures(payload, float(tol)) + check_claims(payload, reward, rel_tol=float(tol))
    lines += consistency_failures(payload, reward)
    return [f"{source}: {line}" for line in lines]


def stated_bracket_failures(payload: dict, tol: float) -> list[str]:
    """Every bracket the file states is as tight as its own bound_rel_tol: (bound − lower)/bound ≤ tol
    (issue 13.3; the certified side is checked by certify.check_claims)."""
    from fractions import Fraction

    from .compiler import bracket_rel_gaps

    from .consistency import _g

    gaps = bracket_rel_gaps(payload)
    return [
        f"{field}: stated bracket has relative gap {_g(gap)} > the file's bound_rel_tol = {tol:g}"
        for field, gap in gaps.items()
        if gap > Fraction(tol)
    ]


def _manifest(path: str):
    """The manifest document if ``path`` is a table-set manifest, else None.

    Only regular files of at most 64 MiB are read (a device or FIFO is never opened for
    reading in full); a file that says it is a manifest but is malformed: InputError."""
    try:
        data = read_regular(path)
    except TableError:
        return None
    if data[:1] != b"{" or MANIFEST_SCHEMA.encode() not in data:
        return None
    try:
        doc = parse_json(data, short(path), max_values=MAX_MANIFEST_JSON_VALUES)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA:
        return None
    _check_manifest_form(path, doc)
    return doc


_FORMATS = ("json", "npz", "c")


def _check_manifest_form(path: str, doc: dict) -> None:
    """InputError (exit 2, one line) unless every record is {path: safe relative name, ...}."""
    files = doc.get("files")
    if not isinstance(files, list):
        raise InputError(f"{short(path)}: malformed manifest ('files' must be a list)")
    seen = set()
    for i, rec in enumerate(files):
        if not isinstance(rec, dict):
            raise InputError(f"{short(path)}: malformed manifest (files[{i}] is not an object)")
        rel = rec.get("path")
        if not isinstance(rel, str) or not rel:
            raise InputError(f"{short(path)}: malformed manifest (files[{i}].path must be a non-empty string)")
        if rec.get("table_id") is not None and not isinstance(rec.get("table_id"), str):
            raise InputError(f"{short(path)}: malformed manifest (files[{i}].table_id must be a string or null)")
        if not isinstance(rec.get("sha256"), str) or rec.get("format") not in _FORMATS:
            raise InputError(f"{short(path)}: malformed manifest (files[{i}] needs a sha256 string and a format "
                             f"among {', '.join(_FORMATS)})")
        parts = rel.replace("\\", "/").split("/")
        if (os.path.isabs(rel) or rel.startswith(("/", "\\")) or any(p in ("", ".", "..") for p in parts)
                or "\x00" in rel or (len(rel) > 1 and rel[1] == ":")):
            raise InputError(f"{short(path)}: manifest path {short(rel, 80)!r} leaves the set's directory "
                             "(only plain relative names are allowed)")
        if rel in seen:
            raise InputError(f"{short(path)}: malformed manifest (path {short(rel, 80)!r} listed twice)")
        seen.add(rel)


def _read_listed(base: str, rel: str) -> bytes:
    """Bytes of a listed file: a regular file inside ``base``, no symlink, at most 64 MiB."""
    full = os.path.join(base, rel)
    real_base = os.path.realpath(base)
    if not os.path.realpath(full).startswith(real_base.rstrip(os.sep) + os.sep):
        raise TableError("resolves outside the set's directory")
    probe = full
    while probe != base and len(probe) > len(base):
        if os.path.islink(probe):
            raise TableError("is a symbolic link (a manifest lists regular files only)")
        probe = os.path.dirname(probe)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        raise TableError("missing") from None
    except OSError as e:
        raise TableError(f"cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise TableError("not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise TableError(f"{st.st_size} bytes, over the {MAX_FILE_BYTES >> 20} MiB limit")
    try:
        return read_regular(full)
    except TableError as e:
        raise TableError(str(e).rpartition(": ")[2]) from None


def verify_manifest(path: str, doc: dict) -> list[str]:
    """Every file of a manifest present with its sha256; every table's claims re-proven; every
    other format of a table (NPZ, C header) checked against the table (issue 20.10); the
    aggregate header re-derived from the per-table headers."""
    base = os.path.dirname(os.path.abspath(path))
    failures = []
    intact: dict = {}  # table_id -> {format: (full path, bytes)} of files whose sha256 matches
    records = sorted(doc["files"], key=lambda r: (r.get("format") != "json", r["path"]))
    for rec in records:
        rel = rec["path"]
        full = os.path.join(base, rel)
        try:
            data = _read_listed(base, rel)
        except TableError as e:
            failures.append(f"{short(full)}: listed in {short(path)} but {e}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != rec.get("sha256"):
            failures.append(f"{short(full)}: bytes differ from the sha256 listed in {short(path)}")
            continue
        intact.setdefault(rec.get("table_id"), {})[rec["format"]] = (full, data)
    for tid in sorted(intact, key=lambda t: (t is None, str(t))):
        files = intact[tid]
        if tid is None:
            continue  # the aggregate header: below
        primary = "json" if "json" in files else "npz" if "npz" in files else None
        if primary is None:
            failures += _header_names_failures(tid, *files["c"]) if "c" in files else []
            continue
        full, data = files[primary]
        lines = verify_file(full)
        failures += lines
        try:
            payload = load(full).payload
        except TableError:
            continue  # reported by verify_file
        if payload.get("table_id") != tid or os.path.basename(full) != f"{tid}{_SUFFIX[primary]}":
            failures.append(f"{short(full)}: holds table {short(payload.get('table_id'), 80)!r}, but {short(path)} "
                            f"lists it as {short(tid, 80)!r} (a table renamed?)")
            continue
        for fmt in ("npz", "c"):
            if fmt != primary and fmt in files:
                failures += format_failures(payload, fmt, *files[fmt], table_source=short(full))
    if None in intact and "c" in intact[None]:
        failures += _aggregate_failures(path, doc, base, *intact[None]["c"])
    return failures


_SUFFIX = {"json": ".json", "npz": ".npz", "c": ".h"}
_C_ARRAY = re.compile(rb"static const double (coefgen_[0-9a-z_]+)\[([0-9]{1,5})\] = \{\n((?:  [^\n]{1,40},\n){1,2048})\};\n")


def format_failures(payload: dict, fmt: str, full: str, data: bytes, table_source: str) -> list[str]:
    """An NPZ or C header of a set against its table's payload: byte for byte what the writers
    render from the payload (same coefgen version), else parsed and compared (older versions:
    the NPZ's payload must equal the table's; the header's array, K and sha256 its values)."""
    from . import __version__
    from .writers import c_identifier, render

    shown = short(full)
    differs = [f"{shown}: is not the {'NPZ' if fmt == 'npz' else 'C header'} of {table_source} "
               "(its content differs from the table; file altered or replaced)"]
    if payload.get("generator_version") == __version__:
        try:
            return [] if render(payload, fmt, __version__) == data else differs
        except (KeyError, TypeError, ValueError):
            return differs
    if fmt == "npz":
        try:
            other = load(full).payload
        except TableError as e:
            return [str(e)]
        return [] if other == payload else differs
    name = "coefgen_" + c_identifier(str(payload.get("table_id")))
    m = _C_ARRAY.search(data)
    if m is None or m.group(1).decode() != name or int(m.group(2)) != payload["K"]:
        return differs
    try:
        vals = [float(x.strip().rstrip(b",")) for x in m.group(3).splitlines()]
    except ValueError:
        return differs
    macro = name.upper()
    want = [f"#define {macro}_K {payload['K']}\n", f'#define {macro}_SHA256 "{payload["sha256"]}"\n']
    if [v.hex() for v in vals] != [float(v).hex() for v in payload["values"]] or not all(
            w.encode() in data for w in want):
        return differs
    return []


def _header_names_failures(tid: str, full: str, data: bytes) -> list[str]:
    """A set of C headers only: each header must at least be the header of its listed table."""
    from .writers import c_identifier

    name = "coefgen_" + c_identifier(str(tid))
    m = _C_ARRAY.search(data)
    if m is None or m.group(1).decode() != name:
        return [f"{short(full)}: is not the C header of table {short(tid, 80)!r}"]
    return []


def _request_of(rec: dict, inputs: dict):
    """The spec's TableRequest of a manifest record (so the aggregate's lookup keys are derived by
    the spec's own rule); a plain namespace with the same fields if the record does not fit it."""
    from types import SimpleNamespace

    from .spec import TableRequest

    tid, div = str(rec["table_id"]), str(inputs.get("divergence"))
    try:
        req = TableRequest(table_id=tid, divergence=div, estimator=inputs.get("estimator"),
                           params=inputs.get("params") or {}, K=inputs.get("K"), entry=rec.get("entry"), line=0)
        req.lookup_estimator  # noqa: B018 - the property must work on this record
        return req
    except Exception:  # noqa: BLE001 - another schema of records: the same rule, spelled out
        head = tid.rpartition("-K")[0]
        slug = div.replace(":", "").replace("/", "over").replace(",", "_")
        return SimpleNamespace(table_id=tid, divergence=div, K=inputs.get("K"), lookup_estimator=head[len(slug) + 1:])


def _aggregate_failures(path: str, doc: dict, base: str, full: str, data: bytes) -> list[str]:
    """coefgen_tables.h re-derived from the set's per-table headers (same coefgen version)."""
    from types import SimpleNamespace

    from . import __version__
    from .aggregate import aggregate_header

    if doc.get("generator_version") != __version__:
        return []  # another version's aggregate layout: its sha256 was checked above
    tables = []
    for rec in doc["files"]:
        inputs = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else None
        if rec.get("format") != "c" or rec.get("table_id") is None or inputs is None:
            continue
        tables.append(_request_of(rec, inputs))
    try:
        want = aggregate_header(SimpleNamespace(tables=tables), base)
    except Exception:  # noqa: BLE001 - a missing or unreadable per-table header
        want = None
    if want != data:
        return [f"{short(full)}: is not the aggregate of the set's per-table headers "
                f"(file altered; `coefgen build --force` rewrites it)"]
    return []


def verify_file(path: str) -> list[str]:
    """One line per failed check of a table file or a table-set manifest."""
    doc = _manifest(path)
    if doc is not None:
        return verify_manifest(path, doc)
    try:
        table = load(path)
    except TableError as e:
        return [str(e)]
    return _name_failures(path, table.payload) + verify_payload(table.payload, path)


_TABLE_NAME = re.compile(r".+-K[0-9]{1,5}")


def _name_failures(path: str, payload: dict) -> list[str]:
    """A file named like a coefgen table (``<...>-K<n>.json/.npz``) must hold that table: a
    genuine digamma table renamed to a plug-in's name is not the plug-in (issue 20.10).
    Other names (``t.json``) are the user's choice."""
    stem, ext = os.path.splitext(os.path.basename(path))
    tid = payload.get("table_id")
    if ext in (".json", ".npz") and _TABLE_NAME.fullmatch(stem) and tid != stem:
        return [f"{short(path)}: named as table {short(stem, 80)!r} but holds table {short(tid, 80)!r} (renamed?)"]
    return []
