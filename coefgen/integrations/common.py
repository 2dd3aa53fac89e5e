"""What every trainer integration shares: tables, completion text, counts → t[c], token placement."""

from __future__ import annotations

import os
from typing import Hashable, Sequence

import numpy as np

from ..runtime import RewardTable, load


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


def _hashable(x):
    return x.item() if isinstance(x, np.generic) else x


def answer_codes(answers) -> np.ndarray:
    """Integer codes of answers (equal answers ↔ equal codes) where each None is a fresh
    singleton: it matches nothing, not even another None."""
    index: dict = {}
    out = np.empty(len(answers), dtype=np.int64)
    for i, a in enumerate(answers):
        # a fresh object() equals nothing else: each None is a singleton answer
        out[i] = index.setdefault(object() if a is None else _hashable(a), len(index))
    return out


def rewards_by_group(table: RewardTable, answers: Sequence, group_ids, invalid_reward=None) -> np.ndarray:
    """t[c_i], c_i counted within i's group (``group_ids``, any order); None answers are
    singletons (or get ``invalid_reward``); every group must hold exactly K samples."""
    answers = list(answers)
    if not answers:
        return np.zeros(0)
    invalid = np.array([a is None for a in answers], dtype=bool)
    out = table.rewards_for(answer_codes(answers), group_ids).astype(np.float64)
    if invalid_reward is not None:
        out[invalid] = float(invalid_reward)
    return out


def group_rewards(table_or_path, answers: Sequence[Hashable | None], group_size: int | None = None,
                  invalid_reward: float | None = None) -> np.ndarray:
    """Rewards for a flat list of answers in consecutive groups of ``group_size`` (default K)."""
    table = as_table(table_or_path)
    g = table.K if group_size is None else int(group_size)
    if g != table.K:
        raise ValueError(f"groups of {g} samples but the table is for K = {table.K}: "
                         f"sample K = {table.K} per prompt, or load the table built for K = {g}")
    if len(answers) % g:
        raise ValueError(f"{len(answers)} samples do not split into groups of K = {g}: a group is partial "
                         "(in multi-process training, gather the completions of all processes first)")
    return rewards_by_group(table, answers, np.arange(len(answers)) // g, invalid_reward)


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
    out = np.zeros(mask.shape, dtype=np.float32)
    # the last valid token: for right-padded responses (verl) this is lengths - 1
    last = mask.shape[1] - 1 - np.argmax((mask != 0)[:, ::-1], axis=1)
    out[np.arange(mask.shape[0]), last] = r
    return out


def to_numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def object_array(items) -> np.ndarray:
    """A 1-D numpy object array of ``items`` (tuples stay elements, not rows)."""
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr
