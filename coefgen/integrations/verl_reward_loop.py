"""verl ≥ 0.7 reward loop: ``CoefgenRewardManager`` (imports verl; verl loads it from its config).

verl builds the manager with ``load_reward_manager(config, tokenizer, reward_router_address=,
reward_model_tokenizer=)`` (``verl/trainer/ppo/reward.py``) from::

    reward.reward_manager.source=importlib
    reward.reward_manager.name=CoefgenRewardManager
    reward.reward_manager.module.path=pkg://coefgen.integrations.verl_reward_loop
    reward.custom_reward_function.path=my_answers.py      # the answer extractor, see below
    reward.custom_reward_function.name=extract_answer
    +reward.reward_kwargs.coefgen_table=tables/kl-aqp-gamma0.75-max_mse4plugin-loo-K8.json
    # optional: +reward.reward_kwargs.coefgen_invalid_reward=-1.0
    #           +reward.reward_kwargs.coefgen_validation_reward=0.0
    #           +reward.reward_kwargs.coefgen_allow_std_normalization=true

The table file and its siblings for smaller group sizes in the same directory (same name stem,
``-K<k>``; ``coefgen.integrations.common.resolve_family``) form a family: a uid group of k samples
is scored with the k-table. The table's baseline must be the one
``algorithm.adv_estimator`` runs (``coefgen.integrations.verl.verl_baseline``).

The custom reward function is the answer extractor: verl calls it like a ``compute_score``,
``extract_answer(data_source=, solution_str=, ground_truth=, extra_info=)``, and it returns
a hashable final answer (or None). Per sample, ``run_single`` decodes the response and
extracts the answer; the counts and t[c] are taken in the class method
``assemble_rm_scores(data, scores)`` over the whole batch, grouped by ``uid``, which refuses
a partial group. verl 0.9.1 calls ``assemble_rm_scores`` only from
``RewardLoopManager.compute_rm_score``, i.e. when rewards are not streamed from the agent
loop; when they are (``reward.reward_model.enable=False``, or ``enable_resource_pool=True``)
verl places each ``run_single`` score as the sample's reward and no batch-level step runs,
so the manager refuses that configuration at construction. It also refuses verl's v1 trainer
(``trainer.use_v1=True``, 0.9.1's default), whose colocated reward step passes no ``uid``.
Where it runs: ``trainer.use_v1=False`` with ``reward.reward_model.enable=True`` and
``enable_resource_pool=False`` (the legacy trainer's colocated reward path).
"""

from __future__ import annotations

import inspect
import os

import numpy as np
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from ..runtime import group_codes
from .common import resolve_family, to_numpy
from .verl import (REWARD_KWARGS_OPT_IN, config_get, decode_and_call, verl_check_baseline, verl_group_scores,
                   verl_padding_rows)

RECORD = "coefgen"  # the key marking a run_single record




def _settings(config) -> dict:
    reward = config_get(config, "reward", {})
    kwargs = config_get(reward, "reward_kwargs", {})
    table = config_get(kwargs, "coefgen_table")
    if not table:
        raise ValueError("CoefgenRewardManager needs a table: set +reward.reward_kwargs.coefgen_table=<path to a "
                         "coefgen table file>")
    out = {"table": os.path.abspath(str(table))}  # the driver assembles with the file the worker loaded
    for key in ("coefgen_invalid_reward", "coefgen_validation_reward"):
        value = config_get(kwargs, key)
        out[key] = None if value is None else float(value)
    out["allow_std"] = bool(config_get(kwargs, "coefgen_allow_std_normalization", False))
    return out


def check_config(config, family, validation_reward, allow_std_normalization: bool = False) -> None:
    """Refuse, at construction, a verl configuration where the group-level reward cannot be right."""
    algorithm = config_get(config, "algorithm", {})
    verl_check_baseline(family.baseline, config_get(algorithm, "adv_estimator", "gae"),
                        bool(config_get(algorithm, "norm_adv_by_std_in_grpo", True)), allow_std_normalization,
                        opt_in=REWARD_KWARGS_OPT_IN)
    reward = config_get(config, "reward", {})
    rm = config_get(reward, "reward_model", {})
    if not config_get(rm, "enable", False) or config_get(rm, "enable_resource_pool", False):
        raise ValueError(
            "CoefgenRewardManager: verl streams rewards from the agent loop in this configuration "
            "(reward.reward_model.enable=False or enable_resource_pool=True): each run_single score becomes "
            "the sample's reward and the batch-level assemble_rm_scores is never called, so counts over a "
            "uid group cannot be taken (verl 0.9.1, experimental/agent_loop/agent_loop.py). coefgen's "
            "group reward needs the non-streamed path (RewardLoopManager.compute_rm_score)")
    if config_get(config_get(config, "trainer", {}), "use_v1", False):
        raise ValueError(
            "CoefgenRewardManager: verl's v1 trainer (trainer.use_v1=True, the default in 0.9.1) hands the "
            "colocated reward step only prompts, responses and raw_prompt (trainer/ppo/v1/trainer_base.py, "
            "_compute_reward_colocate): no uid, so samples cannot be grouped by prompt. On the v1 trainer use "
            "coefgen.integrations.verl_v1 (CoefgenAnswerManager + CoefgenSampler), or set trainer.use_v1=False")
    if not config_get(config_get(reward, "custom_reward_function", {}), "path"):
        raise ValueError("CoefgenRewardManager needs the answer extractor as verl's custom reward function: set "
                         "reward.custom_reward_function.path=<file> and .name=<function(data_source, solution_str, "
                         "ground_truth, extra_info) -> answer or None>")
    rollout = config_get(config_get(config, "actor_rollout_ref", {}), "rollout", {})
    sizes = ", ".join(map(str, family.sizes))
    n = config_get(rollout, "n")
    if n is not None and int(n) not in family.sizes:
        raise ValueError(f"verl samples actor_rollout_ref.rollout.n = {int(n)} responses per prompt but the coefgen "
                         f"tables are for group sizes {sizes}: set rollout.n to one of them, or load the table built "
                         f"for K = {int(n)}")
    val_n = config_get(config_get(rollout, "val_kwargs", {}), "n")
    if val_n is not None and int(val_n) not in family.sizes and not family.signal_free(int(val_n)) \
            and validation_reward is None:
        raise ValueError(f"verl validates with actor_rollout_ref.rollout.val_kwargs.n = {int(val_n)} responses per "
                         f"prompt but the coefgen tables are for group sizes {sizes}: set val_kwargs.n to one of "
                         "them, or give validation samples a fixed reward with "
                         "+reward.reward_kwargs.coefgen_validation_reward=<float>")


class CoefgenRewardManager(RewardManagerBase):
    """Group-level t[c] reward for verl's reward loop (see the module docstring for the config)."""

    def __init__(self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.settings = _settings(config)
        self.family = resolve_family(self.settings["table"])
        self.table = self.family.table_for(self.family.K)
        check_config(config, self.family, self.settings["coefgen_validation_reward"], self.settings["allow_std"])
        self.extract_answer = compute_score
        self.is_async = inspect.iscoroutinefunction(compute_score) or (
            hasattr(compute_score, "func") and inspect.iscoroutinefunction(getattr(compute_score, "func")))
        self.reward_router_address = reward_router_address
        self.reward_model_tokenizer = reward_model_tokenizer

    async def run_single(self, data: DataProto) -> dict:
        """Decode one sample's response and extract its answer; the reward is assembled per batch."""
        nt, answer = await decode_and_call(self, data)
        record = {RECORD: 1, "answer": answer, "uid": nt.get("uid"), "table": self.settings["table"],
                  "sha256": self.table.sha256, "invalid_reward": self.settings["coefgen_invalid_reward"],
                  "validation_reward": self.settings["coefgen_validation_reward"]}
        return {"reward_score": record, "reward_extra_info": {"coefgen_answer": "" if answer is None else str(answer)}}

    _tables: dict = {}

    @classmethod
    def assemble_rm_scores(cls, data: DataProto, scores: list):
        """Counts over each uid's whole group and t[c] on the last response token (verl's placement)."""
        if not scores:
            return super().assemble_rm_scores(data, [])
        if not all(isinstance(s, dict) and s.get(RECORD) == 1 for s in scores):
            raise TypeError("CoefgenRewardManager.assemble_rm_scores got scores not made by its run_single")
        first = scores[0]
        key = (first["table"], first["sha256"])
        if key not in cls._tables:
            family = resolve_family(first["table"])
            table = family.table_for(family.K)
            if table.sha256 != first["sha256"]:
                raise ValueError(f"{first['table']} changed while training (sha256 {table.sha256} ≠ {first['sha256']})")
            cls._tables[key] = family
        family = cls._tables[key]
        table = family.table_for(family.K)
        if "uid" in data.non_tensor_batch:
            uids = list(data.non_tensor_batch["uid"])
        else:
            uids = [s["uid"] for s in scores]
        if any(u is None for u in uids):
            raise ValueError("CoefgenRewardManager: the batch carries no per-sample uid (data.non_tensor_batch['uid']), "
                             "so samples cannot be grouped by prompt")
        answers = [s["answer"] for s in scores]
        # verl pads validation batches with copies of their first rows (pad_dataproto_to_divisor)
        pad = verl_padding_rows(uids, to_numpy(data.batch["responses"]), table.K)
        real = len(uids) - pad
        answers, uids = answers[:real], uids[:real]
        # verl 0.9.1 does not flag validation at this step (meta_info has no "validate" there):
        # a batch in which no uid group holds K samples is validation with val_kwargs.n != K
        _, sizes = np.unique(group_codes(uids), return_counts=True)
        validate = bool(data.meta_info.get("validate", False)) or not np.any(sizes == table.K)
        rewards, _ = verl_group_scores(family, answers, uids, invalid_reward=first["invalid_reward"],
                                       other_size_reward=first["validation_reward"] if validate else None)
        rewards = np.concatenate([rewards, rewards[np.arange(pad) % max(real, 1)]]) if pad else rewards
        return super().assemble_rm_scores(data, rewards.tolist())


__all__ = ["CoefgenRewardManager", "check_config"]
