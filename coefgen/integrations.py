"""Trainer integration helpers (numpy only; no trainer is imported, torch only lazily).

A sample whose answer is shared by c of the K samples of its group gets reward t[c]. The
helpers below turn what each trainer hands to a reward function into the counts c:

* TRL (``GRPOTrainer``): ``trl_reward_func(table, extract_answer)`` returns a reward
  function ``f(prompts, completions, **kwargs) -> list[float]``; groups are ``num_generations``
  consecutive completions (TRL repeats each prompt ``num_generations`` times in a row).
  Multi-process training: TRL calls reward functions on each process's *slice* of the batch,
  and a group may straddle processes, so counts computed on a slice are wrong. Gather the
  completions of all processes first (``gather=`` below, e.g. with accelerate's
  ``gather_object``) or make each process hold whole groups.
* verl: ``verl_rewards(table, answers, uids)`` keyed by the per-sample ``uid`` of
  ``data.non_tensor_batch["uid"]`` (groups need not be contiguous);
  ``place_token_level(rewards, response_mask)`` puts each sample's reward on its last
  response token, as verl's reward managers do; ``VerlRewardManager`` wraps both.
* OpenRLHF: ``openrlhf_rewards(table, answers_2d)`` for answers reshaped to
  ``(n_prompts, n_samples_per_prompt)``; ``openrlhf_reward_func`` for a remote/custom
  ``reward_func(queries, prompts, labels)`` whose batch holds whole groups in a row.

An answer the extractor cannot find (``None``) matches nothing: it counts as a singleton
(c = 1) and does not raise the count of anyone else; or pass ``invalid_reward`` to give
such samples a fixed reward instead.
"""

from __future__ import annotations

import os
from typing import Callable, Hashable, Sequence

import numpy as np

from .runtime import RewardTable, answer_counts, load

__all__ = [
    "as_table", "completion_text", "group_rewards", "trl_reward_func", "verl_rewards",
    "place_token_level", "VerlRewardManager", "openrlhf_rewards", "openrlhf_reward_func",
]


def as_table(table_or_path) -> RewardTable:
    """A RewardTable from a table or a path to a JSON/NPZ table file."""
    if isinstance(table_or_path, RewardTable):
        return table_or_path
    if isinstance(table_or_path, (str, os.PathLike)):
        return load(table_or_path)
    raise TypeError(f"expected a RewardTable or a path to a table file, got {type(table_or_path).__name__}")


def completion_text(completion) -> str:
    """Text of a completion: a string, or chat format (a list of {"role", "content"} messages;
    the last assistant message's content, whose content may be a list of {"type": "text"} parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"] or messages
        if not assistant:
            return ""
        content = assistant[-1].get("content", "")
        if isinstance(content, (list, tuple)):
            return "".join(part.get("text", "") for part in content
                           if isinstance(part, dict) and part.get("type", "text") == "text")
        return "" if content is None else str(content)
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def _rewards(table: RewardTable, answers: Sequence, group_ids, invalid_reward) -> np.ndarray:
    """t[c_i] with None answers as singletons (or ``invalid_reward``); groups must have K samples."""
    answers = list(answers)
    if not answers:
        return np.zeros(0)
    invalid = np.array([a is None for a in answers], dtype=bool)
    out = table.rewards_for(_answer_codes(answers), group_ids).astype(np.float64)
    if invalid_reward is not None:
        out[invalid] = float(invalid_reward)
    return out


def _hashable(x):
    return x.item() if isinstance(x, np.generic) else x


def _answer_codes(answers) -> np.ndarray:
    """Codes of answers where each None is a fresh singleton (it matches nothing)."""
    index: dict = {}
    out = np.empty(len(answers), dtype=np.int64)
    for i, a in enumerate(answers):
        # a fresh object() equals nothing else: each None is a singleton answer
        out[i] = index.setdefault(object() if a is None else _hashable(a), len(index))
    return out


def group_rewards(table_or_path, answers: Sequence[Hashable | None], group_size: int | None = None,
                  invalid_reward: float | None = None) -> np.ndarray:
    """Rewards for a flat list of answers in consecutive groups of ``group_size`` (default K)."""
    table = as_table(table_or_path)
    g = table.K if group_size is None else int(group_size)
    if g != table.K:
        raise ValueError(f"groups of {g} samples but the table is for K = {table.K}")
    if len(answers) % g:
        raise ValueError(f"{len(answers)} samples do not split into groups of {g}: this process holds a "
                         "partial group; gather the completions of all processes first")
    return _rewards(table, answers, np.arange(len(answers)) // g, invalid_reward)


# --------------------------------------------------------------------------- TRL

def trl_reward_func(table_or_path, extract_answer: Callable[[str], Hashable | None],
                    num_generations: int | None = None, invalid_reward: float | None = None,
                    gather: Callable[[list], tuple[list, int]] | None = None, check_prompts: bool = True):
    """A TRL-style reward function ``f(prompts, completions, **kwargs) -> list[float]``.

    ``num_generations`` consecutive completions form a group (default: the table's K, which
    must equal GRPOConfig.num_generations). Completions may be strings or chat-format lists of
    {"role", "content"} messages. ``extract_answer(text)`` returns a hashable final answer,
    or None when there is none.

    Multi-process training: TRL calls reward functions on each process's slice of the
    generation batch, and groups may straddle processes. Pass ``gather(local_answers) ->
    (all_answers, offset)`` returning the answers of every process, in global order, and the
    index of this process's first sample in them; the function then computes counts on whole
    groups and returns this process's slice. With accelerate::

        from accelerate import PartialState
        from accelerate.utils import gather_object
        def gather(local):
            sizes = gather_object([len(local)])
            return gather_object(local), sum(sizes[:PartialState().process_index])

    ``check_prompts``: refuse groups whose prompts differ (a sign of misaligned groups).
    """
    table = as_table(table_or_path)
    g = table.K if num_generations is None else int(num_generations)
    if g != table.K:
        raise ValueError(f"num_generations = {g} but the table is for K = {table.K}: use the table built for K = {g}")

    def reward_func(prompts=None, completions=None, **kwargs) -> list[float]:
        if completions is None:
            raise TypeError("reward function called without completions")
        answers = [extract_answer(completion_text(c)) for c in completions]
        if gather is None:
            if check_prompts and prompts is not None and len(answers) % g == 0:
                for start in range(0, len(prompts), g):
                    group = prompts[start:start + g]
                    if any(_prompt_key(p) != _prompt_key(group[0]) for p in group):
                        raise ValueError(f"completions {start}..{start + g - 1} do not share one prompt: "
                                         f"groups are not {g} consecutive completions (did TRL hand this "
                                         "process a slice that splits groups? gather them first)")
            return group_rewards(table, answers, g, invalid_reward).tolist()
        all_answers, offset = gather(answers)
        rewards = group_rewards(table, list(all_answers), g, invalid_reward)
        return rewards[offset:offset + len(answers)].tolist()

    reward_func.__name__ = f"coefgen_{table.divergence.replace(':', '')}_{table.estimator}_K{table.K}"
    return reward_func


def _prompt_key(prompt):
    if isinstance(prompt, str):
        return prompt
    return repr(prompt)


# --------------------------------------------------------------------------- verl

def verl_rewards(table_or_path, answers: Sequence[Hashable | None], uids,
                 invalid_reward: float | None = None) -> np.ndarray:
    """Per-sample rewards keyed by verl's per-sample ``uid`` (``data.non_tensor_batch["uid"]``,
    a numpy object array); the samples of a uid need not be contiguous; each uid must have K."""
    table = as_table(table_or_path)
    uids = np.asarray(uids)
    if uids.ndim != 1 or len(uids) != len(answers):
        raise ValueError(f"{len(uids)} uids for {len(answers)} answers")
    return _rewards(table, answers, list(uids.tolist()), invalid_reward)


def place_token_level(rewards, response_mask):
    """A (batch, response_len) array with each reward on the sample's last response token
    (the last position where ``response_mask`` is 1), zeros elsewhere — the layout of verl's
    ``token_level_scores``. numpy in, numpy out; torch in, torch out."""
    if type(response_mask).__module__.startswith("torch"):
        import torch  # lazy

        out = place_token_level(np.asarray(rewards, dtype=np.float32), response_mask.detach().cpu().numpy())
        return torch.as_tensor(out, device=response_mask.device)
    mask = np.asarray(response_mask)
    r = np.asarray(rewards, dtype=np.float64 if mask.dtype != np.float32 else np.float32)
    if mask.ndim != 2 or r.shape != (mask.shape[0],):
        raise ValueError(f"rewards of shape {r.shape} do not match a response mask of shape {mask.shape}")
    lengths = (mask != 0).sum(axis=1)
    if np.any(lengths == 0):
        raise ValueError("a sample has an empty response (its mask is all zeros): nowhere to put its reward")
    out = np.zeros(mask.shape, dtype=r.dtype if r.dtype == np.float32 else np.float32)
    # the last valid token: for right-padded responses (verl) this is lengths - 1
    last = mask.shape[1] - 1 - np.argmax((mask != 0)[:, ::-1], axis=1)
    out[np.arange(mask.shape[0]), last] = r
    return out


class VerlRewardManager:
    """A verl-style reward manager: ``manager(data)`` -> token-level reward tensor.

    ``data`` is a verl DataProto (or anything shaped like it): ``data.batch["prompts"]``,
    ``["responses"]``, ``["attention_mask"]`` and ``data.non_tensor_batch["uid"]``. Responses
    are decoded with ``tokenizer.decode(ids, skip_special_tokens=True)`` like verl's naive
    manager; ``extract_answer(text)`` gives the answer. Register it where verl builds its
    reward manager (``reward_fn``), e.g. in a custom trainer entry point.
    """

    def __init__(self, tokenizer, table_or_path, extract_answer, invalid_reward=None):
        self.tokenizer = tokenizer
        self.table = as_table(table_or_path)
        self.extract_answer = extract_answer
        self.invalid_reward = invalid_reward

    def __call__(self, data, return_dict: bool = False):
        batch = data.batch
        prompt_len = _shape(batch["prompts"])[-1]
        attention = batch["attention_mask"]
        response_mask = _to_numpy(attention)[:, prompt_len:]
        responses = _to_numpy(batch["responses"])
        texts = []
        for i in range(responses.shape[0]):
            n = int((response_mask[i] != 0).sum())
            texts.append(self.tokenizer.decode(responses[i, :n].tolist(), skip_special_tokens=True))
        answers = [self.extract_answer(t) for t in texts]
        rewards = verl_rewards(self.table, answers, data.non_tensor_batch["uid"], self.invalid_reward)
        mask = attention[:, prompt_len:] if type(attention).__module__.startswith("torch") else response_mask
        tensor = place_token_level(rewards, mask)
        if return_dict:
            return {"reward_tensor": tensor, "reward_extra_info": {"coefgen_reward": rewards.tolist(),
                                                                   "answer_count": _counts_for(answers, data)}}
        return tensor


def _counts_for(answers, data):
    uids = np.asarray(data.non_tensor_batch["uid"]).tolist()
    return answer_counts(_answer_codes(answers), uids).tolist()


def _shape(x):
    return tuple(x.shape)


def _to_numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- OpenRLHF

def openrlhf_rewards(table_or_path, answers_2d, invalid_reward: float | None = None) -> np.ndarray:
    """Rewards of shape (n_prompts, n_samples_per_prompt) for answers of that shape: integer
    answer ids (a numpy array), or nested lists of hashables (None: no answer)."""
    table = as_table(table_or_path)
    if isinstance(answers_2d, np.ndarray):
        arr = answers_2d
    else:
        rows = [list(row) for row in answers_2d]
        width = {len(row) for row in rows}
        if len(width) > 1:
            raise ValueError(f"rows of different lengths {sorted(width)}: expected (n_prompts, n_samples)")
        arr = _object_2d([x for row in rows for x in row], width.pop() if width else 1)
    if arr.ndim != 2:
        raise ValueError(f"expected answers of shape (n_prompts, n_samples), got shape {arr.shape}")
    n_prompts, n = arr.shape
    if n != table.K:
        raise ValueError(f"{n} samples per prompt but the table is for K = {table.K}")
    if arr.dtype.kind in "iu":
        from .runtime import grouped_counts

        return table.rewards(grouped_counts(arr)).astype(np.float64)
    flat = arr.reshape(-1).tolist()
    return _rewards(table, flat, np.repeat(np.arange(n_prompts), n), invalid_reward).reshape(n_prompts, n)


def openrlhf_reward_func(table_or_path, extract_answer, n_samples_per_prompt: int | None = None,
                         invalid_reward: float | None = None):
    """``reward_func(queries, prompts, labels)`` for OpenRLHF's ``--remote_rm_url`` python file:
    ``queries`` are prompt+response strings with the ``n_samples_per_prompt`` samples of a
    prompt consecutive (OpenRLHF reshapes rewards to (-1, n_samples_per_prompt) the same way).
    Returns a torch tensor when torch is installed, else a numpy array."""
    table = as_table(table_or_path)
    n = table.K if n_samples_per_prompt is None else int(n_samples_per_prompt)
    if n != table.K:
        raise ValueError(f"n_samples_per_prompt = {n} but the table is for K = {table.K}")

    def reward_func(queries, prompts=None, labels=None, **kwargs):
        texts = list(queries)
        if prompts is not None:
            texts = [q[len(p):] if isinstance(q, str) and isinstance(p, str) and q.startswith(p) else q
                     for q, p in zip(texts, prompts)]
        answers = [extract_answer(t) for t in texts]
        if len(answers) % n:
            raise ValueError(f"{len(answers)} samples do not split into groups of {n}")
        rewards = openrlhf_rewards(table, _object_2d(answers, n), invalid_reward).reshape(-1)
        try:
            import torch  # lazy: OpenRLHF expects a tensor
        except ImportError:
            return rewards
        return torch.as_tensor(rewards, dtype=torch.float32)

    return reward_func


def _object_2d(items, n):
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr.reshape(-1, n)
