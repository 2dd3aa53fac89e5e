"""Test helper: a sealed table payload built directly (for format and runtime tests)."""

from coefgen import __version__
from coefgen.payload import SCHEMA, seal
from coefgen.rewards import parse_reward
from coefgen.solvers.exact import solve_exact
from coefgen.writers import table_id


def exact_payload(divergence="alpha:3", K=6):
    reward = parse_reward(divergence)
    sol = solve_exact(reward, K)
    return seal({
        "schema": SCHEMA, "generator_version": __version__, "table_id": table_id(reward.name, "exact", {}, K),
        "divergence": reward.name, "reward": reward.formula, "K": K, "estimator": "exact", "estimator_params": {},
        "baseline": "none", "values": [float(v) for v in sol.values], "values_exact": sol.values_exact, "certified": True,
        "bias_bound": "0", "bias_lower": "0", "variance_bound": "1", "mse_bound": "1", "minimax_level": "0",
    })
