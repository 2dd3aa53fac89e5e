"""Readable summary of a table payload (``coefgen show``)."""

from __future__ import annotations

import json

from .rewards import parse_reward


def _what(payload: dict) -> str:
    try:
        formula = parse_reward(payload["divergence"]).formula
    except Exception:  # noqa: BLE001 - a foreign divergence name is still shown
        formula = payload.get("reward", "?")
    return f"r(p) = {formula}"


def describe(payload: dict, path: str = "") -> str:
    """Several lines: what the table estimates, K, estimator, bounds with witnesses, values."""
    K = payload["K"]
    params = {k: v for k, v in payload.get("estimator_params", {}).items() if k != "solver"}
    solver = payload.get("estimator_params", {}).get("solver")
    w = payload.get("witness", {})
    lines = [
        f"{path or payload.get('table_id', 'table')}",
        f"  estimates   {_what(payload)} ({payload['divergence']}) from the count c of a group of K = {K}",
        f"  estimator   {payload['estimator']}" + (f" {json.dumps(params, sort_keys=True)}" if params else ""),
        f"  version     coefgen {payload['generator_version']}, schema {payload['schema']}, sha256 {payload['sha256'][:16]}...",
    ]
    baseline = payload.get("baseline", "none")
    if baseline == "none":
        lines.append("  baseline    none: for a trainer that uses t[c] as the advantage (no group baseline)")
    else:
        what = "leave-one-out mean (RLOO)" if baseline == "loo" else "group mean (GRPO without std, Dr.GRPO)"
        lines.append(f"  baseline    {baseline}: for a trainer that subtracts the {what}; it runs t_1..t_{K - 1} "
                     f"as a {K - 1}-sample table, and every bound below is that table's")
    if not payload.get("certified", True):
        lines.append("  NOT CERTIFIED: the bounds below are not proven")
    lines.append(f"  minimax level E*_{payload.get('effective_K', K)} = {payload['minimax_level']}")
    lines.append(
        f"  sup|bias|   in [{payload['bias_lower']}, {payload['bias_bound']}]"
        + (f"  worst at p = {w['bias']}" if "bias" in w else "")
    )
    if "variance_lower" in payload:
        lines.append(f"  sup var     in [{payload['variance_lower']}, {payload['variance_bound']}]"
                     + (f"  worst at p = {w['variance']}" if "variance" in w else ""))
    else:
        lines.append(f"  sup var     <= {payload['variance_bound']}")
    if "mse_lower" in payload:
        lines.append(f"  sup mse     in [{payload['mse_lower']}, {payload['mse_bound']}]"
                     + (f"  worst at p = {w['mse']}" if "mse" in w else ""))
    else:
        lines.append(f"  sup mse     <= {payload['mse_bound']}")
    if solver:
        lines.append(f"  solver      {json.dumps(solver, sort_keys=True)}")
    lines.append("  values (c: t_c)")
    vals = payload["values"]
    shown = list(range(K)) if K <= 16 else list(range(8)) + [None] + list(range(K - 4, K))
    for c in shown:
        lines.append("    ..." if c is None else f"    {c + 1:>5}: {vals[c]!r}")
    return "\n".join(lines)
