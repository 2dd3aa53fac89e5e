"""``coefgen verify``: re-read a table file and re-prove every claim it makes.

Checks schema and sha256 (runtime loader), then recomputes the certified brackets from the
stored float64 values and compares them with the stated ones (certify.check_claims).
"""

from __future__ import annotations

from .errors import InputError
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
    return [f"{source}: {line}" for line in check_claims(payload, reward)]


def verify_file(path: str) -> list[str]:
    try:
        table = load(path)
    except TableError as e:
        return [str(e)]
    return verify_payload(table.payload, path)
