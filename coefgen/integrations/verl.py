"""verl: rewards keyed by the per-sample ``uid`` (numpy only; no verl import).

verl carries one ``uid`` per prompt in ``data.non_tensor_batch["uid"]`` (a numpy object
array) and the samples of a uid need not be contiguous (``DataProto.repeat(interleave=True)``
then ``reorder`` / batch balancing). The verl ≥ 0.7 reward-loop manager is
``coefgen.integrations.verl_reward_loop.CoefgenRewardManager`` (it imports verl); the pieces
below are what it computes with, plus ``VerlRewardManager`` for verl ≤ 0.6's
``reward_fn(data, return_dict=True)``.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

from ..runtime import answer_counts
from .common import answer_codes, as_table, place_token_level, rewards_by_group, to_numpy


def verl_rewards(table_or_path, answers: Sequence[Hashable | None], uids,
                 invalid_reward: float | None = None) -> np.ndarray:
    """Per-sample t[c] keyed by verl's per-sample ``uid``; the samples of a uid need not be
    contiguous; each uid must have exactly K samples in the batch."""
    table = as_table(table_or_path)
    uids = np.asarray(uids)
    if uids.ndim != 1 or len(uids) != len(answers):
        raise ValueError(f"{len(uids)} uids for {len(answers)} answers")
    return rewards_by_group(table, answers, list(uids.tolist()), invalid_reward)


def verl_group_scores(table_or_path, answers: Sequence[Hashable | None], uids,
                      invalid_reward: float | None = None, other_size_reward: float | None = None):
    """(rewards, counts) for a whole verl batch: t[c_i] with c_i counted over i's uid group.

    Every uid must hold exactly K samples, else a ValueError naming the uid and its size
    (never a count over a partial group) — unless ``other_size_reward`` is given: then the
    samples of a uid whose size is not K get that fixed value (verl's validation batches,
    ``val_kwargs.n`` samples per prompt). ``counts`` are the c_i, 0 for those samples."""
    table = as_table(table_or_path)
    answers = list(answers)
    uid_list = list(np.asarray(uids).tolist())
    if len(uid_list) != len(answers):
        raise ValueError(f"{len(uid_list)} uids for {len(answers)} answers")
    n = len(answers)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    _, inverse, sizes = np.unique(answer_codes(uid_list), return_inverse=True, return_counts=True)
    size_of = sizes[inverse.reshape(-1)]
    whole = size_of == table.K
    if not whole.all() and other_size_reward is None:
        i = int(np.flatnonzero(~whole)[0])
        raise ValueError(f"uid {uid_list[i]!r} has {int(size_of[i])} samples in this batch but the coefgen table "
                         f"is for K = {table.K}: counts are taken only over whole groups of K "
                         f"(set actor_rollout_ref.rollout.n = {table.K}, or load the table built for "
                         f"K = {int(size_of[i])})")
    rewards = np.full(n, np.nan if other_size_reward is None else float(other_size_reward))
    counts = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(whole)
    if idx.size:
        sub_answers = [answers[i] for i in idx]
        sub_uids = [uid_list[i] for i in idx]
        rewards[idx] = rewards_by_group(table, sub_answers, sub_uids, invalid_reward)
        counts[idx] = answer_counts(answer_codes(sub_answers), sub_uids)
    return rewards, counts


def verl_padding_rows(uids, responses, K: int) -> int:
    """How many trailing rows of a batch are verl's padding (``pad_dataproto_to_divisor``
    appends copies of the first rows), or 0.

    p > 0 only when the last p rows equal rows 0..p-1 (cyclically) in uid and response
    tokens, and without them every uid group has exactly K samples while with them some
    group has more: nothing else is taken for padding."""
    uid_list = list(np.asarray(uids).tolist())
    rows = np.asarray(responses)
    n = len(uid_list)
    if n == 0:
        return 0
    _, sizes = np.unique(answer_codes(uid_list), return_counts=True)
    if sizes.max() <= K:
        return 0
    for p in range(1, n):
        real = n - p
        tail = np.arange(real, n)
        head = np.arange(p) % real
        if any(uid_list[i] != uid_list[j] for i, j in zip(tail, head)) or not np.array_equal(rows[tail], rows[head]):
            continue
        _, sizes = np.unique(answer_codes(uid_list[:real]), return_counts=True)
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
        self.table = as_table(table_or_path)
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
        rewards, counts = verl_group_scores(self.table, answers, data.non_tensor_batch["uid"], self.invalid_reward)
        mask = attention[:, prompt_len:] if type(attention).__module__.startswith("torch") else response_mask
        tensor = place_token_level(rewards, mask)
        if return_dict:
            return {"reward_tensor": tensor, "reward_extra_info": {"coefgen_reward": rewards.tolist(),
                                                                   "answer_count": counts.tolist()}}
        return tensor


__all__ = ["verl_rewards", "verl_group_scores", "verl_padding_rows", "place_token_level", "VerlRewardManager"]
