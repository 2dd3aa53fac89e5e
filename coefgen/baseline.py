"""The trainer's group baseline as part of a table (DESIGN §10): a transformation and its inverse.

Under a leave-one-out baseline the advantage of sample i is a_i − mean_{j≠i} a_j; with
count-based rewards its expected value, for an answer of probability p, is
T_{K−1}(p) = Σ_{c<K} t_c C(K−2, c−1) p^(c−1) (1−p)^(K−1−c): the first K−1 entries act as a
(K−1)-sample table with no baseline, and t_K never matters (when all K samples agree every
advantage is 0). The group mean a_i − mean_j a_j is (K−1)/K times the LOO advantage: the same
direction and equilibrium, a step (K−1)/K as long.

So the table for group size K under ``loo`` or ``mean`` is the no-baseline table solved at K−1
(``inner``), padded with t_K = t_{K−1} = T_{K−1}(1) (the (K−1)-table's own estimate when every
sample shares the answer: a monotone table stays monotone, and misused without a baseline it
still has T_K(1) = T_{K−1}(1)). Every claim the file states is the inner table's: a claim about
the estimator the trainer runs.

``with_baseline(inner, b)`` builds that payload; ``effective_payload(p)`` is its inverse (the
(K−1)-table whose claims the file states); ``baseline_failures`` checks that a file is exactly
the transformation of its own inverse.
"""

from __future__ import annotations

from .payload import BASELINES, baseline_of, seal

GROUP_BASELINES = ("loo", "mean")
# added by with_baseline: K − 1, the sample size of the estimator the trainer runs
EFFECTIVE_K = "effective_K"


def _id_suffix(K: int, baseline: str) -> str:
    return f"-K{K}" if baseline == "none" else f"-{baseline}-K{K}"


def with_baseline(inner: dict, baseline: str) -> dict:
    """The sealed payload for group size K = inner K + 1 under a group baseline: values
    t_1..t_{K−1} of ``inner`` (a no-baseline payload) and t_K = t_{K−1}; claims unchanged."""
    if baseline not in GROUP_BASELINES:
        raise ValueError(f"with_baseline: baseline must be one of {', '.join(GROUP_BASELINES)}, got {baseline!r}")
    if baseline_of(inner) != "none":
        raise ValueError("with_baseline: the inner table must have no baseline")
    k = inner["K"]
    tid = inner["table_id"]
    suffix = _id_suffix(k, "none")
    if not tid.endswith(suffix):
        raise ValueError(f"with_baseline: table id {tid!r} does not end in {suffix!r}")
    out = {key: v for key, v in inner.items() if key != "sha256"}
    out.update({
        "K": k + 1,
        "baseline": baseline,
        EFFECTIVE_K: k,
        "table_id": tid[: -len(suffix)] + _id_suffix(k + 1, baseline),
        "values": list(inner["values"]) + [inner["values"][-1]],
        "values_exact": list(inner["values_exact"]) + [inner["values_exact"][-1]],
    })
    return seal(out)


def effective_payload(payload: dict) -> dict:
    """The no-baseline (K−1)-table whose claims a loo/mean file states (the payload itself for
    baseline none): the inverse of ``with_baseline``."""
    baseline = baseline_of(payload)
    if baseline == "none":
        return payload
    K = payload["K"]
    out = {key: v for key, v in payload.items() if key not in ("sha256", EFFECTIVE_K)}
    tid = str(payload.get("table_id", ""))
    suffix = _id_suffix(K, baseline)
    out.update({
        "K": K - 1,
        "baseline": "none",
        "table_id": (tid[: -len(suffix)] if tid.endswith(suffix) else tid) + _id_suffix(K - 1, "none"),
        "values": list(payload["values"][:-1]),
        "values_exact": list(payload["values_exact"][:-1]),
    })
    return seal(out)


def baseline_failures(payload: dict) -> list[str]:
    """Empty when ``payload`` is exactly ``with_baseline(effective_payload(payload), baseline)``
    (or has baseline none and no effective_K); else one line per reason."""
    baseline = baseline_of(payload)
    if baseline not in BASELINES:
        return [f"baseline {str(baseline)[:40]!r} is not one of {', '.join(BASELINES)}"]
    if baseline == "none":
        return [f"{EFFECTIVE_K} is stated but the table has no baseline"] if EFFECTIVE_K in payload else []
    K = payload.get("K")
    if not isinstance(K, int) or K < 3:
        return [f"a {baseline} table needs K >= 3 (a group of 2 carries no signal under a group baseline)"]
    out = []
    if payload.get(EFFECTIVE_K) != K - 1:
        out.append(f"{EFFECTIVE_K} must be K - 1 = {K - 1}, got {str(payload.get(EFFECTIVE_K))[:40]!r}")
    values, exact = payload["values"], payload["values_exact"]
    if repr(float(values[-1])) != repr(float(values[-2])) or exact[-1] != exact[-2]:
        out.append(f"t_K must equal t_(K-1) under baseline {baseline} (the padding of the (K-1)-table)")
    if out:
        return out
    try:
        rebuilt = with_baseline(effective_payload(payload), baseline)
    except (ValueError, KeyError, TypeError) as e:
        return [f"not a {baseline} table built from a (K-1)-table: {e}"]
    if rebuilt["sha256"] != payload.get("sha256"):
        diff = sorted(k for k in set(rebuilt) | set(payload) if k != "sha256" and rebuilt.get(k) != payload.get(k))
        return [f"not the {baseline} table of its own (K-1)-table (fields differ: {', '.join(diff[:5])})"]
    return []
