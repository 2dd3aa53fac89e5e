"""The table-file contract (DESIGN §7), stdlib only: canonical JSON and its sha256.

Canonical JSON: sorted keys, UTF-8, 2-space indent, floats as shortest round-trip repr,
trailing newline. ``sha256`` is the hex digest of the canonical JSON of the payload without
the ``sha256`` field. Shared by the writers and by ``coefgen.runtime`` (numpy only).
"""

from __future__ import annotations

import hashlib
import json
import math

SCHEMA = "coefgen.table/1"
MANIFEST_SCHEMA = "coefgen.manifest/1"  # the manifest.json of a table set

REQUIRED_FIELDS = (
    "schema", "generator_version", "divergence", "reward", "K", "estimator", "estimator_params",
    "values", "values_exact", "bias_bound", "bias_lower", "variance_bound", "mse_bound",
    "minimax_level", "sha256",
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


def validate(payload, source: str = "table") -> None:
    """Raise ValueError with a one-line reason unless ``payload`` is an intact table."""
    if not isinstance(payload, dict):
        raise ValueError(f"{source}: not a coefgen table (top level is not an object)")
    if payload.get("schema") != SCHEMA:
        raise ValueError(f"{source}: unsupported schema {payload.get('schema')!r} (expected {SCHEMA!r})")
    missing = [f for f in REQUIRED_FIELDS if f not in payload]
    if missing:
        raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
    K = payload["K"]
    if not isinstance(K, int) or isinstance(K, bool) or K < 1:
        raise ValueError(f"{source}: K must be a positive integer, got {K!r}")
    values = payload["values"]
    if not isinstance(values, list) or len(values) != K:
        raise ValueError(f"{source}: values must be a list of K = {K} numbers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{source}: values must be finite numbers, found {v!r}")
    if not isinstance(payload["values_exact"], list) or len(payload["values_exact"]) != K:
        raise ValueError(f"{source}: values_exact must be a list of K = {K} strings")
    digest = payload_sha256(payload)
    if payload["sha256"] != digest:
        raise ValueError(f"{source}: sha256 mismatch (file altered or corrupted): stated {str(payload['sha256'])[:12]}..., content {digest[:12]}...")
