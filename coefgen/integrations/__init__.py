"""Trainer integrations (numpy only: no trainer is imported here, torch only lazily).

A sample whose answer is shared by c of the K samples of its group gets reward t[c]. One
module per trainer turns what that trainer hands to a reward hook into the counts c:

* ``coefgen.integrations.trl`` — TRL ``GRPOTrainer`` reward function (``trl_reward_func``).
* ``coefgen.integrations.verl`` — verl: uid-keyed rewards, token placement, the verl ≤ 0.6
  ``reward_fn(data, return_dict=True)`` manager; the verl ≥ 0.7 reward-loop manager lives in
  ``coefgen.integrations.verl_reward_loop`` (imports verl; verl loads it from its config).
* ``coefgen.integrations.openrlhf`` — OpenRLHF: reshaped rewards; the group-level agent
  executor lives in ``coefgen.integrations.openrlhf_agent`` (imports OpenRLHF; loaded by
  ``--agent_func_path``).
* ``bon_quantile_rewards`` (from ``coefgen.bon``) — BOND/vBoN quantile rewards: a kl table of
  K = k + 1 maps c = 1 + #{reference rewards ≤ the sample's} to an estimate of log p_≤.

The TRL and OpenRLHF functions take a table (RewardTable), a family (TableFamily: each group
scored with the table of its own size) or a path — or the keywords ``divergence=, K=,
baseline=`` for the default set's family — and ``objective=`` (required: "kl_regularized",
"entropy_bonus", "consensus"), ``beta=``, ``task_reward=``, ``log_p_ref=``
(``coefgen.runtime.compose_rewards``). The rule matching a table's baseline to a trainer's
advantage step is ``common.check_baseline`` (strict none/loo/mean; group std normalisation
refused unless ``allow_std_normalization=True``).

An answer the extractor cannot find (``None``, or a NaN) matches nothing: it counts as a
singleton (c = 1) and does not raise the count of anyone else; or pass ``invalid_reward`` to
give such samples a fixed reward instead. None/NaN group keys are refused.
"""

from .common import (BaselineMismatch, Composition, as_table, check_baseline, completion_text, group_rewards,
                     place_token_level, resolve_family)
from .openrlhf import openrlhf_reward_func, openrlhf_rewards
from .trl import check_trl_trainer, trl_reward_func
from .verl import VerlRewardManager, verl_group_scores, verl_rewards

# best-of-n distillation (BOND, vBoN): quantile rewards log p_<=(y) from k reference samples
from ..bon import bon_quantile_rewards

__all__ = [
    "as_table", "completion_text", "group_rewards", "trl_reward_func", "verl_rewards",
    "verl_group_scores", "place_token_level", "VerlRewardManager", "openrlhf_rewards",
    "openrlhf_reward_func", "bon_quantile_rewards", "check_trl_trainer", "check_baseline", "BaselineMismatch",
    "Composition", "resolve_family",
]
