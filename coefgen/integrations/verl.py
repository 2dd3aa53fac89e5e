"""verl: rewards keyed by the per-sample ``uid`` (numpy only; no verl import).

verl carries one ``uid`` per prompt in ``data.non_tensor_batch["uid"]`` (a numpy object
array) and the samples of a uid need not be contiguous (``DataProto.repeat(interleave=True)``
then ``reorder`` / batch balancing). The verl ≥ 0.7 reward-loop manager is
``coefgen.integrations.verl_reward_loop.CoefgenRewardManager`` (it imports verl); the pieces
below are what it computes with, plus ``VerlRewardManager`` for verl ≤ 0.6's
``reward_fn(data, return_dict=True)``.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

from ..runtime import answer_counts, group_codes, is_missing
from .common import OPT_IN, answer_codes, check_baseline, place_token_level, resolve_family, to_numpy


def verl_rewards(table_or_path, answers: Sequence[Hashable | None], uids,
                 invalid_reward: float | None = None) -> np.ndarray:
    """Per-sample t_k[c] keyed by verl's per-sample ``uid`` (samples of a uid need not be
    contiguous; uids compared as Python objects, None/NaN refused), k = the uid's number of
    samples, from a table family (``common.resolve_family``: a path is the file and its smaller-K
    siblings); a size the family lacks is refused."""
    if len(uids) != len(answers):
        raise ValueError(f"{len(uids)} uids for {len(answers)} answers")
    return family_group_rewards(table_or_path, answers, uids, invalid_reward)[0]


def verl_group_scores(table_or_path, answers: Sequence[Hashable | None], uids,
                      invalid_reward: float | None = None, other_size_reward: float | None = None):
    """(rewards, counts) for a whole verl batch: t_k[c_i] with c_i counted over i's uid group and
    k its size, from a table family (``common.resolve_family``: a path is the file and its smaller-K
    siblings); uids follow ``runtime.group_codes`` (1 and "1" are two groups; None/NaN refused).

    A uid whose size the family lacks (or larger than its K) raises a ValueError naming the uid,
    its size and the family's sizes (never a count over a wrong table) — unless
    ``other_size_reward`` is given: then those samples get that fixed value (verl's validation
    batches, ``val_kwargs.n`` samples per prompt). ``counts`` are the c_i, 0 for those samples."""
    family = resolve_family(table_or_path)
    answers = list(answers)
    uid_list = list(uids)  # the keys as Python objects (runtime.group_codes: 1 and "1" differ)
    if len(uid_list) != len(answers):
        raise ValueError(f"{len(uid_list)} uids for {len(answers)} answers")
    n = len(answers)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    _, inverse, sizes = np.unique(group_codes(uid_list), return_inverse=True, return_counts=True)
    size_of = sizes[inverse.reshape(-1)]
    known = np.array([int(k) in family.sizes or family.signal_free(int(k)) for k in size_of])
    if not known.all() and other_size_reward is None:
        i = int(np.flatnonzero(~known)[0])
        raise ValueError(f"uid {uid_list[i]!r} has {int(size_of[i])} samples in this batch but the coefgen table is "
                         f"for K = {family.K} (group sizes {', '.join(map(str, family.sizes))}): set "
                         f"actor_rollout_ref.rollout.n to one of them, or load the table built for "
                         f"K = {int(size_of[i])} beside it")
    rewards = np.full(n, np.nan if other_size_reward is None else float(other_size_reward))
    counts = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(known)
    if idx.size:
        r, c, _ = family_group_rewards(family, [answers[i] for i in idx], [uid_list[i] for i in idx], invalid_reward)
        rewards[idx], counts[idx] = r, c
    return rewards, counts


def verl_padding_rows(uids, responses, K: int) -> int:
    """How many trailing rows of a batch are verl's padding (``pad_dataproto_to_divisor``
    appends copies of the first rows), or 0.

    p > 0 only when the last p rows equal rows 0..p-1 (cyclically) in uid and response
    tokens, and without them every uid group has exactly K samples while with them some
    group has more: nothing else is taken for padding."""
    uid_list = list(uids)
    rows = np.asarray(responses)
    n = len(uid_list)
    if n == 0:
        return 0
    codes = group_codes(uid_list)
    _, sizes = np.unique(codes, return_counts=True)
    if sizes.max() <= K:
        return 0
    for p in range(1, n):
        real = n - p
        tail = np.arange(real, n)
        head = np.arange(p) % real
        if np.any(codes[tail] != codes[head]) or not np.array_equal(rows[tail], rows[head]):
            continue
        _, sizes = np.unique(codes[:real], return_counts=True)
        if np.all(sizes == K):
            return p
    return 0


class VerlRewardManager:
    """verl ≤ 0.6: ``reward_fn(data, return_dict=False)`` -> token-level reward tensor.

    ``data`` is a verl DataProto (or anything shaped like it): ``data.batch["prompts"]``,
    ``["responses"]``, ``["attention_mask"]`` and ``data.non_tensor_batch["uid"]``. Responses
    are decoded with ``tokenizer.decode(ids, skip_special_tokens=True)`` like verl's naive
    manager; ``extract_answer(text)`` gives the answer. For verl ≥ 0.7 use
    ``coefgen.integrations.verl_reward_loop.CoefgenRewardManager``.
    """

    def __init__(self, tokenizer=None, table_or_path=None, extract_answer=None, invalid_reward=None, **kwargs):
        if "config" in kwargs or "compute_score" in kwargs:
            raise TypeError("VerlRewardManager is verl ≤ 0.6's reward_fn(data); verl ≥ 0.7 builds reward-loop managers "
                            "with config=: use reward.reward_manager.source=importlib, .name=CoefgenRewardManager, "
                            ".module.path=pkg://coefgen.integrations.verl_reward_loop")
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {sorted(kwargs)}")
        if table_or_path is None or extract_answer is None:
            raise TypeError("VerlRewardManager(tokenizer, table_or_path, extract_answer) needs all three")
        self.tokenizer = tokenizer
        self.family = resolve_family(table_or_path)
        self.table = self.family.table_for(self.family.K)
        self.extract_answer = extract_answer
        self.invalid_reward = invalid_reward

    def __call__(self, data, return_dict: bool = False):
        batch = data.batch
        prompt_len = tuple(batch["prompts"].shape)[-1]
        attention = batch["attention_mask"]
        response_mask = to_numpy(attention)[:, prompt_len:]
        responses = to_numpy(batch["responses"])
        texts = []
        for i in range(responses.shape[0]):
            n = int((response_mask[i] != 0).sum())
            texts.append(self.tokenizer.decode(responses[i, :n].tolist(), skip_special_tokens=True))
        answers = [self.extract_answer(t) for t in texts]
        rewards, counts = verl_group_scores(self.family, answers, data.non_tensor_batch["uid"], self.invalid_reward)
        mask = attention[:, prompt_len:] if type(attention).__module__.startswith("torch") else response_mask
        tensor = place_token_level(rewards, mask)
        if return_dict:
            return {"reward_tensor": tensor, "reward_extra_info": {"coefgen_reward": rewards.tolist(),
                                                                   "answer_count": counts.tolist()}}
        return tensor


SAMPLER_OPT_IN = "set +trainer.v1.sampler.sampler_kwargs.coefgen_allow_std_normalization=true"
REWARD_KWARGS_OPT_IN = "set +reward.reward_kwargs.coefgen_allow_std_normalization=true"


def config_get(node, key, default=None):
    """``node[key]`` of a verl (omegaconf or dict) config node, ``default`` when absent, None or not a node."""
    try:
        value = node.get(key, default)
    except AttributeError:
        return default
    return default if value is None else value



async def decode_and_call(manager, data):
    """(non-tensor fields, result) of one sample for a verl reward manager's ``run_single``: the last
    sequence's response decoded as verl's naive manager does, and the user's function
    (``manager.extract_answer``, sync or async) called with verl's keyword arguments."""
    item = data[-1:][0]  # multi-sequence outputs: the last sequence, like verl's naive manager
    response_ids = item.batch["responses"]
    response_length = response_ids.shape[-1]
    valid = int(item.batch["attention_mask"][-response_length:].sum())
    text = await manager.loop.run_in_executor(
        None, lambda: manager.tokenizer.decode(response_ids[:valid], skip_special_tokens=True))
    nt = item.non_tensor_batch
    kwargs = {"data_source": nt.get("data_source"), "solution_str": text,
              "ground_truth": (nt.get("reward_model") or {}).get("ground_truth"),
              "extra_info": nt.get("extra_info") or {}}
    if manager.is_async:
        return nt, await manager.extract_answer(**kwargs)
    return nt, await manager.loop.run_in_executor(None, lambda: manager.extract_answer(**kwargs))


# ---- verl's advantage estimators and the table baseline they need (verl 0.9.1, trainer/ppo/core_algos.py) ----

#: estimator -> the group baseline it subtracts. grpo is listed separately (it depends on
#: norm_adv_by_std_in_grpo); grpo_vectorized never receives that flag from verl's
#: compute_advantage and always divides by the group std.
_BASELINE_OF = {
    "rloo": "loo",                           # r_i - mean_{j != i} r_j  (times n/(n-1))
    "rloo_vectorized": "loo",                # the same, vectorised
    "reinforce_plus_plus_baseline": "mean",  # r_i - mean_j r_j, then one whitening over the batch
}
_STD_ALWAYS = ("grpo_vectorized",)
_REFUSED = {
    "gae": "a learned critic (no group baseline)",
    "reinforce_plus_plus": "a batch-whitened return without a group baseline",
    "remax": "a greedy-rollout baseline",
    "opo": "a length-weighted group baseline",
    "gpg": "a group baseline rescaled by the fraction of non-zero rewards",
    "grpo_passk": "a pass@k advantage (only the best sample)",
    "gdpo": "per-dimension group normalisation",
    "optimal_token_baseline": "a per-token baseline",
    "tir_optimal_token_baseline": "a per-token baseline",
}
SUPPORTED_ESTIMATORS = ("grpo", "grpo_vectorized", "rloo", "rloo_vectorized", "reinforce_plus_plus_baseline")


def verl_advantage(adv_estimator, norm_adv_by_std_in_grpo: bool = True) -> dict:
    """What verl 0.9.1's ``algorithm.adv_estimator`` (with ``algorithm.norm_adv_by_std_in_grpo``)
    does to the rewards, for ``common.check_baseline``: {"trainer", "baseline", "std_normalized",
    "setting", "fix"}; ValueError (one line, naming the setting) for an estimator no table is made
    for.

    grpo + norm_adv_by_std_in_grpo=False (verl's Dr.GRPO: verl 0.9.1 has no ``dr_grpo``
    estimator) -> "mean"; grpo with the std, and grpo_vectorized (which always divides), ->
    "mean" with std normalisation; rloo / rloo_vectorized -> "loo";
    reinforce_plus_plus_baseline -> "mean" (its batch whitening is one positive scale and shift
    for the whole batch)."""
    name = str(getattr(adv_estimator, "value", adv_estimator))
    setting = f"algorithm.adv_estimator={name}"
    if name == "grpo":
        std = bool(norm_adv_by_std_in_grpo)
        return {"trainer": "verl", "baseline": "mean", "std_normalized": std,
                "setting": setting + (" with algorithm.norm_adv_by_std_in_grpo=True (the default)" if std else
                                      " with algorithm.norm_adv_by_std_in_grpo=False"),
                "fix": "set algorithm.norm_adv_by_std_in_grpo=False (Dr.GRPO, a 'mean' table) or "
                       "algorithm.adv_estimator=rloo (a 'loo' table)"}
    if name in _STD_ALWAYS:
        return {"trainer": "verl", "baseline": "mean", "std_normalized": True,
                "setting": setting + " (always divides by the group std)",
                "fix": "set algorithm.adv_estimator=grpo with algorithm.norm_adv_by_std_in_grpo=False (a 'mean' "
                       "table), or rloo (a 'loo' table)"}
    if name in _BASELINE_OF:
        return {"trainer": "verl", "baseline": _BASELINE_OF[name], "std_normalized": False, "setting": setting,
                "fix": ""}
    what = _REFUSED.get(name, "an estimator coefgen does not know")
    raise ValueError(f"coefgen: {setting} uses {what}; coefgen's tables are made for the group "
                     "baselines of grpo (with algorithm.norm_adv_by_std_in_grpo=False), rloo, rloo_vectorized and "
                     "reinforce_plus_plus_baseline: set one of them")


def verl_baseline(adv_estimator, norm_adv_by_std_in_grpo: bool = True, allow_std_normalization: bool = False,
                  opt_in: str = OPT_IN) -> str:
    """The table baseline ("none" | "loo" | "mean") that verl's estimator runs (``verl_advantage``);
    group std normalisation refused through ``common.check_baseline`` unless
    ``allow_std_normalization`` (``opt_in``: the phrase naming the user's opt-in)."""
    adv = verl_advantage(adv_estimator, norm_adv_by_std_in_grpo)
    if adv["std_normalized"]:
        check_baseline(adv["baseline"], adv["baseline"], True, adv["setting"], adv["fix"], allow_std_normalization,
                       trainer=adv["trainer"], opt_in=opt_in)
    return adv["baseline"]


def verl_check_baseline(table_baseline: str, adv_estimator, norm_adv_by_std_in_grpo: bool = True,
                        allow_std_normalization: bool = False, opt_in: str = OPT_IN) -> str:
    """``common.check_baseline`` for verl: refuse a table whose baseline is not the one verl's
    estimator runs (strict match), or group std normalisation without the opt-in (which logs
    once what it costs); returns the baseline."""
    adv = verl_advantage(adv_estimator, norm_adv_by_std_in_grpo)
    check_baseline(table_baseline, adv["baseline"], adv["std_normalized"], adv["setting"], adv["fix"],
                   allow_std_normalization, trainer=adv["trainer"], opt_in=opt_in)
    return adv["baseline"]


def check_trainer_config(config, family, allow_std_normalization: bool, validation_reward) -> str:
    """verl's v1 trainer with CoefgenSampler: refuse, before the first step, a configuration
    where the group reward cannot be right (one line naming the setting and the fix); returns the
    baseline the estimator runs. ``config`` is verl's whole trainer config (an OmegaConf node or
    a dict), ``family`` the TableFamily the sampler scores with."""
    algorithm = config_get(config, "algorithm", {})
    baseline = verl_check_baseline(family.baseline, config_get(algorithm, "adv_estimator", "gae"),
                                   bool(config_get(algorithm, "norm_adv_by_std_in_grpo", True)), allow_std_normalization,
                                   opt_in=SAMPLER_OPT_IN)
    reward = config_get(config, "reward", {})
    rm = config_get(reward, "reward_model", {})
    if config_get(rm, "enable", False) and not config_get(rm, "enable_resource_pool", False):
        raise ValueError("coefgen: with a colocated reward model (reward.reward_model.enable=True, "
                         "enable_resource_pool=False) verl computes rm_scores after sampling and would overwrite the "
                         "group rewards: use rule-based reward (reward.reward_model.enable=False) or "
                         "enable_resource_pool=True")
    if config_get(config_get(algorithm, "filter_groups", {}), "enable", False):
        raise ValueError("coefgen: algorithm.filter_groups (DAPO) is done by verl's built-in sampler, which a custom "
                         "sampler replaces (verl 0.9.1 passes it no filter): set algorithm.filter_groups.enable=False")
    rollout = config_get(config_get(config, "actor_rollout_ref", {}), "rollout", {})
    n = int(config_get(rollout, "n", family.K))
    if n not in family.sizes and not family.signal_free(n):
        raise ValueError(f"coefgen: verl samples actor_rollout_ref.rollout.n = {n} responses per prompt but the table "
                         f"family has sizes {', '.join(map(str, family.sizes))}: set rollout.n to one of them, or load "
                         f"the table built for K = {n}")
    val_n = int(config_get(config_get(rollout, "val_kwargs", {}), "n", 1))
    if validation_reward is None and not family.signal_free(val_n) and val_n not in family.sizes:
        raise ValueError(f"coefgen: verl validates with actor_rollout_ref.rollout.val_kwargs.n = {val_n} but the table "
                         f"family has sizes {', '.join(map(str, family.sizes))}: set val_kwargs.n to one of them, or "
                         "give validation groups of other sizes a fixed reward with "
                         "+trainer.v1.sampler.sampler_kwargs.coefgen_validation_reward=<float>")
    return baseline


# ---- answers as reward_extra_info values, and families of tables ----

def answer_key(answer) -> str | None:
    """A string standing for ``answer`` in verl's ``reward_extra_info`` (which verl's metrics
    read: strings are skipped, numbers averaged), equal for answers Python finds equal
    (1 == 1.0 == True, numpy scalars as their Python values), different otherwise; None for no
    answer (None or a NaN: it matches nothing). Strings, numbers, bytes and tuples of these are
    encoded exactly; any other hashable by its type and repr."""
    if answer is None:
        return None
    if isinstance(answer, np.generic):
        answer = answer.item()
    if isinstance(answer, float) and math.isnan(answer):
        return None
    try:
        if answer != answer:  # any NaN-like object
            return None
    except Exception:
        pass
    return _encode(answer)


def _encode(a) -> str:
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(a, str):
        return "s:" + a
    if isinstance(a, (bool, int)):
        return f"n:{int(a)}"
    if isinstance(a, float):
        if math.isfinite(a) and a == int(a):
            return f"n:{int(a)}"
        return f"n:{a!r}"
    if isinstance(a, bytes):
        return "b:" + a.hex()
    if isinstance(a, tuple):
        return "t:(" + ",".join(_encode(x) if x is not None else "None" for x in a) + ")"
    return f"o:{type(a).__module__}.{type(a).__qualname__}:{a!r}"


def family_group_rewards(family, answers, group_ids, invalid_reward=None):
    """(rewards, counts, sizes) for a flat batch: t_k[c_i] with k the size of i's group and c_i
    counted in it. ``family``: a TableFamily, a RewardTable or a path (``common.resolve_family``:
    the file and its smaller-K siblings). Group keys follow ``runtime.group_codes`` (compared as
    Python objects, in any order: 1 and "1" are two groups; None / NaN refused); a None / NaN
    answer is a singleton (or gets ``invalid_reward``). A group of a size the family lacks, or
    larger than its K, raises ValueError naming the sizes."""
    family = resolve_family(family)
    answers = list(answers)
    if len(group_ids) != len(answers):
        raise ValueError(f"{len(group_ids)} group ids for {len(answers)} answers")
    n = len(answers)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    gcodes = group_codes(group_ids)
    codes = answer_codes(answers)
    for k in np.unique(np.unique(gcodes, return_counts=True)[1]):
        if int(k) not in family.sizes and not family.signal_free(int(k)):
            raise ValueError(f"a group has {int(k)} samples but the coefgen tables are for group sizes "
                             f"{', '.join(map(str, family.sizes))} (largest K = {family.K}): load the table for "
                             f"K = {int(k)} beside them, or sample a group size the family has")
    rewards = family.rewards_for(codes, gcodes).astype(np.float64)
    counts = answer_counts(codes, gcodes)
    _, inv, sizes = np.unique(gcodes, return_inverse=True, return_counts=True)
    if invalid_reward is not None:
        rewards[np.array([is_missing(a) for a in answers])] = float(invalid_reward)
    return rewards, counts, sizes[inv.reshape(-1)]


__all__ = ["verl_rewards", "verl_group_scores", "verl_padding_rows", "place_token_level", "VerlRewardManager",
           "verl_advantage", "verl_baseline", "verl_check_baseline", "check_trainer_config", "SUPPORTED_ESTIMATORS",
           "answer_key", "family_group_rewards"]
