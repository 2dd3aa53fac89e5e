"""verl ≥ 0.9 v1 trainer (``trainer.use_v1=True``, verl 0.9.1's default): group rewards from a
custom sampler (imports verl; verl loads both classes from its config).

On this path every sample is scored on its own as soon as its session ends
(``RewardLoopWorker.compute_score`` → ``run_single``), before its siblings finish. Two pieces:

- ``CoefgenAnswerManager`` (verl's reward manager, ``reward.reward_manager.source=importlib``):
  its ``run_single`` decodes the response, calls the answer extractor (verl's
  ``reward.custom_reward_function``) and writes the answer into ``reward_extra_info`` under
  ``coefgen_answer`` (a string standing for it, see ``coefgen.integrations.verl.answer_key``; None for
  no answer). Its reward is 0.0, or the task score when the custom reward function returns
  ``{"coefgen_answer": answer, "score": R}``.
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
    +trainer.v1.sampler.sampler_kwargs.coefgen_table=/abs/tables/kl-aqp-gamma0.75-max_mse4plugin-mean-K8.json
    +trainer.v1.sampler.sampler_kwargs.coefgen_objective=kl_regularized   # or entropy_bonus, consensus
    # optional: coefgen_beta, coefgen_log_p_ref, coefgen_invalid_reward, coefgen_validation_reward,
    #           coefgen_allow_std_normalization (all under +trainer.v1.sampler.sampler_kwargs.)

The reward written is composed (``coefgen.runtime.compose_rewards``) from t_k[c] and the task
reward R = the score verl's reward manager recorded for the sample (in its reward_extra_info):
with ``CoefgenAnswerManager`` the ``"score"`` of a dict ``{"coefgen_answer": answer, "score": R}``
returned by the custom reward function (0.0 when it returns the bare answer); with verl's naive
manager the ``"score"`` of the user's ``compute_score``.
"""

from __future__ import annotations

import inspect
import math
import os

import numpy as np
import torch
import transfer_queue as tq
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from ..runtime import OBJECTIVES, group_codes
from .common import Composition, resolve_family
from .verl import answer_key, check_trainer_config, config_get, decode_and_call, family_group_rewards

ANSWER_KEY = "coefgen_answer"  # the reward_extra_info key the sampler reads
SCORE_KEY = "coefgen_task_score"  # CoefgenAnswerManager's task score (verl's naive manager: "score")
MODULE = "pkg://coefgen.integrations.verl_v1"
KWARGS = "+trainer.v1.sampler.sampler_kwargs"
SAMPLER_KEYS = ("coefgen_table", "coefgen_objective", "coefgen_beta", "coefgen_log_p_ref", "coefgen_invalid_reward",
                "coefgen_validation_reward", "coefgen_allow_std_normalization")




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
        sampler = config_get(config_get(config_get(config_get(config, "trainer", {}), "v1", {}), "sampler", {}), "custom_sampler", {})
        if not config_get(config_get(config, "trainer", {}), "use_v1", False):
            raise ValueError("CoefgenAnswerManager serves verl's v1 trainer (trainer.use_v1=True) with CoefgenSampler; "
                             "on the legacy trainer use coefgen.integrations.verl_reward_loop.CoefgenRewardManager")
        if config_get(sampler, "name") != "CoefgenSampler":
            raise ValueError("CoefgenAnswerManager only extracts answers; the rewards are made by CoefgenSampler: set "
                             f"trainer.v1.sampler.custom_sampler.path={MODULE} and "
                             "trainer.v1.sampler.custom_sampler.name=CoefgenSampler")
        self.extract_answer = compute_score
        fn = getattr(compute_score, "func", compute_score)
        self.is_async = inspect.iscoroutinefunction(compute_score) or inspect.iscoroutinefunction(fn)

    async def run_single(self, data: DataProto) -> dict:
        nt, result = await decode_and_call(self, data)
        answer, score = answer_and_score(result)
        return {"reward_score": score, "reward_extra_info": {ANSWER_KEY: answer_key(answer), SCORE_KEY: score}}


def answer_and_score(result):
    """(answer, task score) from what the custom reward function returned: an answer (score 0.0),
    or a dict {"coefgen_answer": answer, "score": task reward} (the score is the sample's reward
    score and ``reward_extra_info["coefgen_task_score"]``, the task reward R that CoefgenSampler
    composes with t[c])."""
    if isinstance(result, dict):
        if ANSWER_KEY not in result:
            raise ValueError(f"coefgen: the custom reward function returned a dict without {ANSWER_KEY!r} (keys "
                             f"{sorted(map(str, result))}): return the answer, or {{{ANSWER_KEY!r}: answer, "
                             "'score': task reward}")
        score = result.get("score", 0.0)
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise TypeError(f"coefgen: the custom reward function returned score {score!r}, not a number") from None
        if score != score or score in (float("inf"), float("-inf")):
            raise ValueError(f"coefgen: the custom reward function returned score {score}: a task reward must be finite")
        return result[ANSWER_KEY], score
    return result, 0.0


def _trainer_config(refill_fn):
    """verl's whole trainer config: the sampler is built with ``refill_fn`` bound to the trainer."""
    return getattr(getattr(refill_fn, "__self__", None), "config", None)


class CoefgenSampler(ReplayBuffer):
    """verl's ReplayBuffer (ReplayBufferAsync in the async modes) that, after verl's own selection
    of finished groups, writes each session's group reward t_k[c] into ``rm_scores``.

    sampler_kwargs: ``coefgen_table`` (path to the table for the largest group size; files for
    smaller sizes beside it, same name stem but ``-K<k>``, form the family: ``resolve_family``),
    ``coefgen_objective`` (required: kl_regularized, entropy_bonus or consensus; the reward is
    composed as ``coefgen.runtime.compose_rewards`` says, with the task reward R = the score verl's
    reward manager recorded for the sample in its reward_extra_info),
    optional ``coefgen_beta`` (default 1.0), ``coefgen_log_p_ref`` (kl_regularized: a mapping
    answer -> log p_ref; needs ``coefgen_invalid_reward``), ``coefgen_invalid_reward`` (the whole
    reward of a sample with no answer, instead of counting it as a singleton),
    ``coefgen_validation_reward`` (fixed reward for validation groups of a size the family lacks),
    ``coefgen_allow_std_normalization`` (accept grpo's std division)."""

    def __new__(cls, *args, **kwargs):
        if cls is CoefgenSampler and kwargs.get("trainer_mode", args[0] if args else "sync") != "sync":
            cls = CoefgenSamplerAsync
        return super().__new__(cls)

    def __init__(self, trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                 sampler_kwargs, poll_interval: float = 2.0, refill_fn=None, **kwargs):
        sampler_kwargs = dict(sampler_kwargs or {})
        unknown = sorted(k for k in map(str, sampler_kwargs) if k.startswith("coefgen_") and k not in SAMPLER_KEYS)
        if unknown:
            raise ValueError(f"CoefgenSampler: unknown sampler_kwargs {', '.join(unknown)} (coefgen's keys: "
                             f"{', '.join(SAMPLER_KEYS)})")
        table = sampler_kwargs.get("coefgen_table")
        if not table:
            raise ValueError(f"CoefgenSampler needs a table: set {KWARGS}.coefgen_table=<path to a coefgen table file>")
        self.family = resolve_family(os.path.abspath(str(table)))
        self.invalid_reward = _float_or_none(sampler_kwargs.get("coefgen_invalid_reward"))
        self.validation_reward = _float_or_none(sampler_kwargs.get("coefgen_validation_reward"))
        self.composition, self.log_p_ref = sampler_composition(sampler_kwargs, self.invalid_reward)
        allow_std = bool(sampler_kwargs.get("coefgen_allow_std_normalization", False))
        config = _trainer_config(refill_fn)
        # CoefgenAnswerManager stores answer_key(answer); verl's naive manager the compute_score's value
        manager = config_get(config_get(config_get(config, "reward", {}), "reward_manager", {}), "name")
        self.encoded_answers = manager == "CoefgenAnswerManager"
        rollout = config_get(config_get(config, "actor_rollout_ref", {}), "rollout", {})
        self.group_n = {"train": int(config_get(rollout, "n", 0)), "val": int(config_get(config_get(rollout, "val_kwargs", {}), "n", 0))}
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
        answers, uids, scores = [], [], []
        for uid, session in order:
            row = sessions[(uid, session)][1]
            info = _reward_extra_info(extra[row])
            if ANSWER_KEY not in info:
                raise RuntimeError(f"coefgen: trajectory {keys[row]} has no {ANSWER_KEY!r} in its reward_extra_info: set "
                                   f"reward.reward_manager.source=importlib, .name=CoefgenAnswerManager, "
                                   f".module.path={MODULE}")
            answer = info[ANSWER_KEY]
            answers.append(answer if self.encoded_answers else answer_key(answer))
            uids.append(uid)
            scores.append(_task_reward(info, self.encoded_answers, keys[row]))
        validate = batch.partition_id == "val"
        rewards = self._rewards(answers, uids, scores, validate)
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
        _, sizes = np.unique(group_codes(uids), return_counts=True)
        prefix = "validation" if validate else "training"
        n = self.group_n.get(batch.partition_id, 0) or int(sizes.max())
        return {f"{prefix}/coefgen/groups": float(len(sizes)), f"{prefix}/coefgen/smaller_groups": float(np.sum(sizes < n))}

    def _rewards(self, answers, uids, scores, validate: bool) -> np.ndarray:
        """The composed reward per session: t_k[c] of its group with the task reward ``scores``;
        validation groups of a size the family lacks get ``coefgen_validation_reward`` when set."""
        family = self.family
        _, inv, sizes = np.unique(group_codes(uids), return_inverse=True, return_counts=True)
        size_of = sizes[inv.reshape(-1)]
        ok = np.array([int(k) in family.sizes or family.signal_free(int(k)) for k in size_of])
        if validate and self.validation_reward is not None:
            idx = np.flatnonzero(ok)
        else:
            idx = np.arange(len(answers))  # a size the family lacks raises in family_group_rewards
        out = np.full(len(answers), np.nan if self.validation_reward is None else self.validation_reward)
        if idx.size:
            sub = [answers[i] for i in idx]
            t = family_group_rewards(family, sub, [uids[i] for i in idx])[0]
            out[idx] = self.composition.compose(t, sub, fields=[{"score": scores[i]} for i in idx],
                                                invalid_reward=self.invalid_reward)
        return out


def _task_score(prompt, completion, answer, score):
    return score


def _task_reward(info: dict, encoded: bool, key: str) -> float:
    """The task reward R the reward manager recorded in a trajectory's reward_extra_info (read
    from there, not from rm_scores, so that scoring a trajectory twice gives the same reward):
    CoefgenAnswerManager's ``coefgen_task_score``, verl's naive manager's ``score``."""
    name = SCORE_KEY if encoded else "score"
    if name not in info:
        raise RuntimeError(f"coefgen: trajectory {key} has no {name!r} in its reward_extra_info" +
                           ("" if encoded else ": verl's naive manager needs compute_score to return a dict "
                            f"{{'score': task reward, {ANSWER_KEY!r}: answer}}"))
    value = info[name]
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RuntimeError(f"coefgen: trajectory {key}: its task score {value!r} is not a number") from None
    return value


def sampler_composition(sampler_kwargs: dict, invalid_reward):
    """(Composition, log_p_ref mapping or None) from CoefgenSampler's sampler_kwargs; ValueError
    naming the key for a missing or bad setting."""
    objective = sampler_kwargs.get("coefgen_objective")
    if objective is None:
        raise ValueError(f"CoefgenSampler needs coefgen_objective (no default sign for t[c]): set "
                         f"{KWARGS}.coefgen_objective= one of {', '.join(OBJECTIVES)} (consensus with coefgen_beta=1 "
                         "and a zero task score gives t[c] itself)")
    if str(objective) not in OBJECTIVES:
        raise ValueError(f"CoefgenSampler: coefgen_objective must be one of {', '.join(OBJECTIVES)} (it fixes the sign "
                         f"of t[c] in the reward), got {objective!r}")
    beta = sampler_kwargs.get("coefgen_beta", 1.0)
    raw = sampler_kwargs.get("coefgen_log_p_ref")
    log_p_ref = None
    if raw is not None:
        try:
            items = list(raw.items())
        except AttributeError:
            raise ValueError(f"coefgen_log_p_ref must be a mapping answer -> log p_ref (e.g. "
                             f"'{KWARGS}.coefgen_log_p_ref={{\"4\": -0.7, \"5\": -1.2}}'), got {raw!r}") from None
        if invalid_reward is None:
            raise ValueError("coefgen_log_p_ref needs coefgen_invalid_reward: a sample with no answer has no reference "
                             f"log-probability; set {KWARGS}.coefgen_invalid_reward=<float>")
        log_p_ref = _LogPRef()
        for k, v in items:
            key = answer_key(k)
            if key is None:
                raise ValueError(f"coefgen_log_p_ref has a key {k!r}, which is no answer")
            try:
                value = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"coefgen_log_p_ref[{k!r}] is {v!r}, not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"coefgen_log_p_ref[{k!r}] is {value}: it must be finite")
            log_p_ref.values[key] = value
    try:
        composition = Composition(str(objective), beta, _task_score, log_p_ref)
    except (TypeError, ValueError) as e:
        key = "coefgen_beta" if "beta" in str(e) else "coefgen_log_p_ref" if "log_p_ref" in str(e) else "sampler_kwargs"
        raise ValueError(f"CoefgenSampler: {key}: {e}") from None
    return composition, log_p_ref


class _LogPRef:
    """answer (as ``answer_key`` encodes it) -> log p_ref, from ``coefgen_log_p_ref``."""

    def __init__(self):
        self.values: dict = {}

    def __call__(self, key) -> float:
        if key not in self.values:
            raise ValueError(f"coefgen: coefgen_log_p_ref has no entry for the answer {key[2:] if key else key!r} "
                             f"({key}; its keys: {', '.join(sorted(self.values)) or 'none'})")
        return self.values[key]


class CoefgenSamplerAsync(CoefgenSampler, ReplayBufferAsync):
    """The async modes (colocate_async, separate_async): verl's ReplayBufferAsync selection (stale and
    failed groups evicted and refilled), then the same scoring."""


def _builtin_kwargs(config, trainer_mode) -> dict:
    """The arguments verl gives its built-in sync ReplayBuffer and withholds from custom samplers
    (verl 0.9.1, PPOTrainer._build_replay_buffer), without DAPO filtering."""
    if trainer_mode != "sync":
        return {}
    sampler = config.trainer.v1.sampler
    refill_failed = bool(config_get(sampler, "sync_refill_failed_groups", False))
    train_batch_size = config.data.train_batch_size
    return {"sync_refill_failed_groups": refill_failed, "train_batch_size": train_batch_size,
            "gen_batch_size": 1 if refill_failed else (config_get(config.data, "gen_batch_size") or train_batch_size),
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
