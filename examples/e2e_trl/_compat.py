"""TEMPORARY adapter: what the example needs from coefgen 0.3.0 that may not be merged yet.

Delete this file once coefgen has all of:
  1. ``coefgen solve --baseline mean``                         (used by ``tables.build_tables``)
  2. ``coefgen.runtime.default_table("kl", K=..., baseline="mean")``
  3. ``trl_reward_func(..., objective="kl_regularized", beta=..., task_reward=...)``
Each function below uses the real thing when it exists and says (``TEMPORARY`` in the run's JSON)
when it had to fall back.

The fallbacks follow the shared 0.3.0 decisions exactly: a ``mean`` table at group size K holds the
no-baseline solution at K-1 in t_1..t_{K-1} and t_K = t_{K-1}; the composed KL-regularised reward is
R + beta*log p_ref - beta*t[c].
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from coefgen import payload as _payload


def integration_composes() -> bool:
    """True when coefgen's TRL integration takes objective/beta/task_reward itself."""
    from coefgen.integrations import trl_reward_func

    params = inspect.signature(trl_reward_func).parameters
    return all(k in params for k in ("objective", "beta", "task_reward"))


def pad_to_mean(src, dst) -> dict:
    """TEMPORARY: the ``mean``-baseline table at K = (src's K) + 1 from a no-baseline table file:
    t_1..t_{K-1} = src, t_K = t_{K-1}; claims are src's (those of the estimator a group-mean trainer
    runs). Written canonical and sealed, so ``coefgen.runtime.load`` accepts it."""
    p = json.loads(Path(src).read_text())
    p = {k: v for k, v in p.items() if k != "sha256"}
    p["K"] = int(p["K"]) + 1
    p["values"] = list(p["values"]) + [p["values"][-1]]
    p["values_exact"] = list(p["values_exact"]) + [p["values_exact"][-1]]
    if "baseline" in _payload.REQUIRED_FIELDS:  # schema coefgen.table/2
        p["schema"] = _payload.SCHEMA
        p["baseline"] = "mean"
    sealed = _payload.seal(p)
    tmp = Path(str(dst) + ".tmp")
    tmp.write_text(_payload.canonical_json(sealed), encoding="utf-8")
    tmp.replace(dst)
    return sealed


def composed_reward_func(table_path, task, K: int):
    """The TRL reward function R + beta*log p_ref - beta*t[c], through coefgen.integrations.trl_reward_func
    (p_ref uniform: log p_ref = -log M for every answer, a constant the group-mean baseline removes)."""
    from coefgen.integrations import trl_reward_func

    if integration_composes():
        return trl_reward_func(str(table_path), task.extract_answer, num_generations=K,
                               objective="kl_regularized", beta=task.beta, task_reward=task.task_reward,
                               log_p_ref=task.log_p_ref_of)
    # TEMPORARY: the integration returns t[c]; compose here exactly as coefgen.runtime.compose_rewards does
    base = trl_reward_func(str(table_path), task.extract_answer, num_generations=K)

    def reward_func(prompts=None, completions=None, **kwargs):
        t = base(prompts=prompts, completions=completions, **kwargs)
        return [task.task_reward(p, c) + task.beta * task.log_p_ref - task.beta * tc
                for p, c, tc in zip(prompts, completions, t)]

    reward_func.__name__ = base.__name__
    reward_func.table = base.table
    reward_func.temporary = True
    return reward_func
