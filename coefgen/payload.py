"""The table-file contract (DESIGN §7), stdlib only: canonical JSON and its sha256.

Canonical JSON: sorted keys, UTF-8, 2-space indent, floats as shortest round-trip repr,
trailing newline. ``sha256`` is the hex digest of the canonical JSON of the payload without
the ``sha256`` field. Shared by the writers and by ``coefgen.runtime`` (numpy only).
"""

from __future__ import annotations

import hashlib
import json
import math

SCHEMA = "coefgen.table/2"
OLD_SCHEMAS = ("coefgen.table/1",)  # still load: they predate ``baseline`` and are baseline "none"
BASELINES = ("none", "loo", "mean")  # the trainer's group baseline the table is made for (DESIGN §10)
MIN_K, MAX_K = 2, 2_048  # the group sizes coefgen makes tables for (the CLI's range; see compiler.MAX_K)
MAX_FILE_BYTES = 64 << 20  # a table file (or an NPZ member, decompressed) larger than this is refused
MANIFEST_SCHEMA = "coefgen.manifest/1"  # the manifest.json of a table set

REQUIRED_FIELDS = (
    "schema", "generator_version", "divergence", "reward", "K", "estimator", "estimator_params",
    "values", "values_exact", "bias_bound", "bias_lower", "variance_bound", "mse_bound",
    "minimax_level", "sha256", "baseline",
)


def canonical_json(obj) -> str:
    """Canonical text: sorted keys, indent 2, no NaN/inf, ends with a newline."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def payload_sha256(payload: dict) -> str:
    """sha256 of the canonical JSON of ``payload`` without its ``sha256`` field."""
    body = {k: v for k, v in payload.items() if k != "sha256"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def seal(payload: dict) -> dict:
    """Return a copy of ``payload`` with its ``sha256`` field set."""
    body = {k: v for k, v in payload.items() if k != "sha256"}
    body["sha256"] = payload_sha256(body)
    return body


class DuplicateKeyError(ValueError):
    """A JSON object states the same key twice (which one counts is ambiguous)."""


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


# JSON values a document may hold, bounded before parsing (a parsed value costs 30-100 bytes of
# memory against its 2-3 bytes of text: 64 MiB of "[]," would need ~1.7 GB; issue 20.6).
MAX_TABLE_JSON_VALUES = 20_000        # a table at K = 2048 holds ~4,200 (values, values_exact, fields)
MAX_MANIFEST_JSON_VALUES = 2_000_000  # a manifest of 10,000 tables in three formats holds ~1 M


def json_values_upper_bound(data) -> int:
    """An upper bound on the number of values of a JSON text, without parsing it: every value
    but the first follows a ',' or ':' or opens after '[' / '{' (characters inside strings are
    counted too, so the bound is loose, never low)."""
    if isinstance(data, (bytes, bytearray)):
        return 1 + sum(data.count(c) for c in (b",", b":", b"[", b"{"))
    return 1 + sum(data.count(c) for c in (",", ":", "[", "{"))


def parse_json(data: bytes, source: str = "table", max_values: int | None = None):
    """JSON text → object, strictly: UTF-8, no duplicate keys, no NaN/Infinity, no integers
    beyond 4300 digits or nesting beyond Python's recursion limit, at most ``max_values``
    values (counted before parsing, so memory stays bounded) (all: ValueError, one line).
    Default cap: MAX_MANIFEST_JSON_VALUES for a text naming the manifest schema, else
    MAX_TABLE_JSON_VALUES (either way bounded: at most ~2 M small values)."""
    def no_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    if max_values is None:
        marker = MANIFEST_SCHEMA.encode() if isinstance(data, (bytes, bytearray)) else MANIFEST_SCHEMA
        max_values = MAX_MANIFEST_JSON_VALUES if marker in data else MAX_TABLE_JSON_VALUES

    if json_values_upper_bound(data) > max_values:
        raise ValueError(f"{source}: more than {max_values} JSON values (the cap of this kind of file, "
                         "checked before parsing)")
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=no_constant)
    except UnicodeDecodeError:
        raise ValueError(f"{source}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: invalid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ValueError(f"{source}: JSON nested too deeply") from None
    except ValueError as e:  # duplicate keys, huge integers (int max str digits), constants
        raise ValueError(f"{source}: invalid JSON ({str(e)[:120]})") from None


def baseline_of(payload: dict) -> str:
    """The group baseline a (validated) payload is made for: its ``baseline`` field; "none" for
    files of the old schema, which predate the field."""
    return payload.get("baseline", "none")


def validate(payload, source: str = "table") -> None:
    """Raise ValueError with a one-line reason unless ``payload`` is an intact table."""
    if not isinstance(payload, dict):
        raise ValueError(f"{source}: not a coefgen table (top level is not an object)")
    schema = payload.get("schema")
    if schema != SCHEMA and schema not in OLD_SCHEMAS:
        raise ValueError(f"{source}: unsupported schema {str(schema)[:60]!r} (expected {SCHEMA!r})")
    required = REQUIRED_FIELDS if schema == SCHEMA else tuple(f for f in REQUIRED_FIELDS if f != "baseline")
    missing = [f for f in required if f not in payload]
    if missing:
        raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
    if schema == SCHEMA and payload["baseline"] not in BASELINES:
        raise ValueError(f"{source}: baseline must be one of {', '.join(BASELINES)}, got {str(payload['baseline'])[:40]!r}")
    if schema != SCHEMA and "baseline" in payload:
        raise ValueError(f"{source}: schema {schema} has no baseline field (it was added in {SCHEMA})")
    K = payload["K"]
    if not isinstance(K, int) or isinstance(K, bool) or not MIN_K <= K <= MAX_K:
        raise ValueError(f"{source}: K must be an integer in {MIN_K}..{MAX_K}, got {str(K)[:40]!r}")
    values = payload["values"]
    if not isinstance(values, list) or len(values) != K:
        raise ValueError(f"{source}: values must be a list of K = {K} numbers")
    for v in values:
        try:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(float(v))
        except OverflowError:
            ok = False
        if not ok:
            raise ValueError(f"{source}: values must be finite float64 numbers, found {str(v)[:40]!r}")
    if not isinstance(payload["values_exact"], list) or len(payload["values_exact"]) != K or not all(
            isinstance(v, str) for v in payload["values_exact"]):
        raise ValueError(f"{source}: values_exact must be a list of K = {K} strings")
    digest = payload_sha256(payload)
    if payload["sha256"] != digest:
        raise ValueError(f"{source}: sha256 mismatch (file altered or corrupted): stated {str(payload['sha256'])[:12]}..., content {digest[:12]}...")
