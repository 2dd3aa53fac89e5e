"""verl ≥ 0.9 v1 trainer (``trainer.use_v1=True``, verl 0.9.1's default): group rewards from a
custom sampler (imports verl; verl loads both classes from its config).

On this path every sample is scored on its own as soon as its session ends
(``RewardLoopWorker.compute_score`` → ``run_single``), before its siblings finish. Two pieces:

- ``CoefgenAnswerManager`` (verl's reward manager, ``reward.reward_manager.source=importlib``):
  its ``run_single`` decodes the response, calls the answer extractor (verl's
  ``reward.custom_reward_function``) and writes the answer into ``reward_extra_info`` under
  ``coefgen_answer`` (a string standing for it, see ``coefgen.integrations.verl.answer_key``; None for
  no answer). Its reward is a placeholder 0.0.
- ``CoefgenSampler`` (``trainer.v1.sampler.custom_sampler``): a subclass of verl's own
  ``ReplayBuffer`` (``ReplayBufferAsync`` in the async modes). verl's trainer calls its ``sample()``
  on the driver, for training and for validation (``partition_id="val"``), and it returns only
  groups whose sessions have all ended, before ``_compute_advantage`` reads ``rm_scores``. After
  verl's own selection it reads each session's answer, counts answers within each uid group, and
  rewrites ``rm_scores`` in the TransferQueue: t_k[c] on the last response token, k = the number of
  sessions the group has (a failed session leaves a group of n − 1, scored with the (n − 1) table).

Config keys (see docs/verl.md)::

    reward.reward_manager.source=importlib
    reward.reward_manager.name=CoefgenAnswerManager
    reward.reward_manager.module.path=pkg://coefgen.integrations.verl_v1
    reward.custom_reward_function.path=my_answers.py   # extract_answer(data_source, solution_str, ground_truth, extra_info) -> answer | None
    reward.custom_reward_function.name=extract_answer
    trainer.v1.sampler.custom_sampler.path=pkg://coefgen.integrations.verl_v1
    trainer.v1.sampler.custom_sampler.name=CoefgenSampler
    +trainer.v1.sampler.sampler_kwargs.coefgen_table=tables/kl-aqp-gamma0.75-max_mse4plugin-mean-K8.json
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import torch
import transfer_queue as tq
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from .verl import answer_key, check_trainer_config, family_group_rewards, family_from_table

ANSWER_KEY = "coefgen_answer"  # the reward_extra_info key the sampler reads
MODULE = "pkg://coefgen.integrations.verl_v1"


def _get(node, key, default=None):
    try:
        value = node.get(key, default)
    except AttributeError:
        return default
    return default if value is None else value


def _float_or_none(value):
    return None if value is None else float(value)


class CoefgenAnswerManager(RewardManagerBase):
    """verl reward manager whose ``run_single`` only extracts the answer (into
    ``reward_extra_info["coefgen_answer"]``); ``CoefgenSampler`` turns answers into rewards."""

    def __init__(self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        if compute_score is None:
            raise ValueError("CoefgenAnswerManager needs the answer extractor as verl's custom reward function: set "
                             "reward.custom_reward_function.path=<file> and .name=<function(data_source, solution_str, "
                             "ground_truth, extra_info) -> answer or None>")
        sampler = _get(_get(_get(_get(config, "trainer", {}), "v1", {}), "sampler", {}), "custom_sampler", {})
        if not _get(_get(config, "trainer", {}), "use_v1", False):
            raise ValueError("CoefgenAnswerManager serves verl's v1 trainer (trainer.use_v1=True) with CoefgenSampler; "
                             "on the legacy trainer use coefgen.integrations.verl_reward_loop.CoefgenRewardManager")
        if _get(sampler, "name") != "CoefgenSampler":
            raise ValueError("CoefgenAnswerManager only extracts answers; the rewards are made by CoefgenSampler: set "
                             f"trainer.v1.sampler.custom_sampler.path={MODULE} and "
                             "trainer.v1.sampler.custom_sampler.name=CoefgenSampler")
        self.extract_answer = compute_score
        fn = getattr(compute_score, "func", compute_score)
        self.is_async = inspect.iscoroutinefunction(compute_score) or inspect.iscoroutinefunction(fn)

    async def run_single(self, data: DataProto) -> dict:
        item = data[-1:][0]  # multi-sequence outputs: the last sequence, like verl's naive manager
        response_ids = item.batch["responses"]
        response_length = response_ids.shape[-1]
        valid = int(item.batch["attention_mask"][-response_length:].sum())
        text = await self.loop.run_in_executor(
            None, lambda: self.tokenizer.decode(response_ids[:valid], skip_special_tokens=True))
        nt = item.non_tensor_batch
        kwargs = {"data_source": nt.get("data_source"), "solution_str": text,
                  "ground_truth": (nt.get("reward_model") or {}).get("ground_truth"),
                  "extra_info": nt.get("extra_info") or {}}
        if self.is_async:
            answer = await self.extract_answer(**kwargs)
        else:
            answer = await self.loop.run_in_executor(None, lambda: self.extract_answer(**kwargs))
        return {"reward_score": 0.0, "reward_extra_info": {ANSWER_KEY: answer_key(answer)}}


def _trainer_config(refill_fn):
    """verl's whole trainer config: the sampler is built with ``refill_fn`` bound to the trainer."""
    return getattr(getattr(refill_fn, "__self__", None), "config", None)


class CoefgenSampler(ReplayBuffer):
    """verl's ReplayBuffer (ReplayBufferAsync in the async modes) that, after verl's own selection
    of finished groups, writes each session's group reward t_k[c] into ``rm_scores``.

    sampler_kwargs: ``coefgen_table`` (path to the table for the largest group size; files for
    smaller sizes beside it, same name but ``-K<k>``, form the family), optional
    ``coefgen_invalid_reward`` (reward of a sample with no answer, instead of counting it as a
    singleton), ``coefgen_validation_reward`` (fixed reward for validation groups of a size the
    family lacks), ``coefgen_allow_std_normalization`` (accept grpo's std division)."""

    def __new__(cls, *args, **kwargs):
        if cls is CoefgenSampler and kwargs.get("trainer_mode", args[0] if args else "sync") != "sync":
            cls = CoefgenSamplerAsync
        return super().__new__(cls)

    def __init__(self, trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                 sampler_kwargs, poll_interval: float = 2.0, refill_fn=None, **kwargs):
        sampler_kwargs = dict(sampler_kwargs or {})
        table = sampler_kwargs.get("coefgen_table")
        if not table:
            raise ValueError("CoefgenSampler needs a table: set +trainer.v1.sampler.sampler_kwargs.coefgen_table=<path to "
                             "a coefgen table file>")
        self.family = family_from_table(os.path.abspath(str(table)))
        self.invalid_reward = _float_or_none(sampler_kwargs.get("coefgen_invalid_reward"))
        self.validation_reward = _float_or_none(sampler_kwargs.get("coefgen_validation_reward"))
        allow_std = bool(sampler_kwargs.get("coefgen_allow_std_normalization", False))
        config = _trainer_config(refill_fn)
        rollout = _get(_get(config, "actor_rollout_ref", {}), "rollout", {})
        self.group_n = {"train": int(_get(rollout, "n", 0)), "val": int(_get(_get(rollout, "val_kwargs", {}), "n", 0))}
        if config is None:
            raise ValueError("CoefgenSampler reads verl's trainer config (algorithm.adv_estimator, rollout.n) through "
                             "the refill_fn verl 0.9.1's PPOTrainer passes; this verl passed none, so the table's baseline "
                             "cannot be checked against the advantage estimator")
        check_trainer_config(config, self.family, allow_std, self.validation_reward)
        kwargs = {**_builtin_kwargs(config, trainer_mode), **kwargs}
        super().__init__(trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                         sampler_kwargs, poll_interval=poll_interval, refill_fn=refill_fn, **kwargs)

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        metrics = dict(metrics)
        metrics.update(self.score(batch))
        return batch, metrics

    def score(self, batch) -> dict:
        """Rewrite ``rm_scores`` of every trajectory in ``batch`` (a KVBatchMeta) with its group reward."""
        keys = list(batch.keys)
        if not keys:
            return {}
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields", "rm_scores"])
        if "rm_scores" not in data.keys():
            raise RuntimeError("coefgen: the sampled trajectories carry no rm_scores: verl did not score them in the "
                               "agent loop (use rule-based reward, reward.reward_model.enable=False)")
        extra = list(data["extra_fields"]) if "extra_fields" in data.keys() else [{}] * len(keys)
        old = list(data["rm_scores"].unbind(0))
        # a session may write several outputs ({uid}_{session}_{index}); its answer is its final output's
        sessions: dict[tuple[str, str], tuple[int, int]] = {}
        row_session = []
        for row, key in enumerate(keys):
            uid, session, index = _split_key(key)
            row_session.append((uid, session))
            if (uid, session) not in sessions or sessions[(uid, session)][0] < index:
                sessions[(uid, session)] = (index, row)
        order = list(sessions)
        answers, uids = [], []
        for uid, session in order:
            row = sessions[(uid, session)][1]
            info = _reward_extra_info(extra[row])
            if ANSWER_KEY not in info:
                raise RuntimeError(f"coefgen: trajectory {keys[row]} has no {ANSWER_KEY!r} in its reward_extra_info: set "
                                   f"reward.reward_manager.source=importlib, .name=CoefgenAnswerManager, "
                                   f".module.path={MODULE}")
            answers.append(info[ANSWER_KEY])
            uids.append(uid)
        validate = batch.partition_id == "val"
        rewards = self._rewards(answers, uids, validate)
        by_session = dict(zip(order, rewards))
        new = []
        for row, old_row in enumerate(old):
            r = torch.zeros_like(old_row, dtype=torch.float32)
            if r.numel() == 0:
                raise RuntimeError(f"coefgen: trajectory {keys[row]} has an empty response: nowhere to put its reward")
            r[-1] = float(by_session[row_session[row]])  # where verl puts a reward_score (AgentLoopOutput.as_dict)
            new.append(r)
        tq.kv_batch_put(keys=keys, partition_id=batch.partition_id,
                        fields=TensorDict({"rm_scores": torch.nested.as_nested_tensor(new, layout=torch.jagged)},
                                          batch_size=len(keys)))
        _, sizes = np.unique(np.asarray(uids, dtype=object).astype(str), return_counts=True)
        prefix = "validation" if validate else "training"
        n = self.group_n.get(batch.partition_id, 0) or int(sizes.max())
        return {f"{prefix}/coefgen/groups": float(len(sizes)), f"{prefix}/coefgen/smaller_groups": float(np.sum(sizes < n))}

    def _rewards(self, answers, uids, validate: bool) -> np.ndarray:
        family = self.family
        if not validate or self.validation_reward is None:
            return family_group_rewards(family, answers, uids, self.invalid_reward)[0]
        _, inv, sizes = np.unique(np.asarray(uids, dtype=object).astype(str), return_inverse=True, return_counts=True)
        size_of = sizes[inv.reshape(-1)]
        ok = np.array([k in family.sizes or family.signal_free(int(k)) for k in size_of])
        out = np.full(len(answers), self.validation_reward)
        idx = np.flatnonzero(ok)
        if idx.size:
            out[idx] = family_group_rewards(family, [answers[i] for i in idx], [uids[i] for i in idx],
                                            self.invalid_reward)[0]
        return out


class CoefgenSamplerAsync(CoefgenSampler, ReplayBufferAsync):
    """The async modes (colocate_async, separate_async): verl's ReplayBufferAsync selection (stale and
    failed groups evicted and refilled), then the same scoring."""


def _builtin_kwargs(config, trainer_mode) -> dict:
    """The arguments verl gives its built-in sync ReplayBuffer and withholds from custom samplers
    (verl 0.9.1, PPOTrainer._build_replay_buffer), without DAPO filtering."""
    if trainer_mode != "sync":
        return {}
    sampler = config.trainer.v1.sampler
    refill_failed = bool(_get(sampler, "sync_refill_failed_groups", False))
    train_batch_size = config.data.train_batch_size
    return {"sync_refill_failed_groups": refill_failed, "train_batch_size": train_batch_size,
            "gen_batch_size": 1 if refill_failed else (_get(config.data, "gen_batch_size") or train_batch_size),
            "max_inflight_gen_batches": 1}


def _split_key(key: str):
    parts = key.rsplit("_", 2)
    if len(parts) != 3:
        raise RuntimeError(f"coefgen: unexpected trajectory key {key!r} (verl writes {{uid}}_{{session}}_{{index}})")
    return parts[0], parts[1], int(parts[2])


def _reward_extra_info(extra) -> dict:
    extra = getattr(extra, "data", extra)
    info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
    return info if isinstance(info, dict) else {}


__all__ = ["CoefgenAnswerManager", "CoefgenSampler", "CoefgenSamplerAsync", "check_trainer_config", "ANSWER_KEY"]
