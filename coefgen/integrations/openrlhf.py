"""OpenRLHF: rewards over the ``n_samples_per_prompt`` samples of a prompt (numpy only).

OpenRLHF 0.11.2 calls a ``--remote_rm_url`` Python file's ``reward_func(queries, prompts,
labels)`` once per sample (``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor``, batch
size 1), so no count over a group can be taken there; ``openrlhf_reward_func`` therefore
refuses to be loaded by that executor (a start-up error) instead of failing at every sample.
The group-level hook is a custom agent executor (``--agent_func_path``):
``coefgen.integrations.openrlhf_agent.group_reward_executor`` (it imports OpenRLHF).
"""

from __future__ import annotations

import sys

import numpy as np

from ..runtime import answer_counts, grouped_counts
from .common import answer_codes, as_table, object_array, rewards_by_group

PER_SAMPLE_HOOK = (
    "OpenRLHF calls a --remote_rm_url reward_func once per sample (openrlhf/utils/agent.py, "
    "SingleTurnAgentExecutor: batch size 1), so coefgen cannot count answers over the "
    "n_samples_per_prompt samples of a prompt there. Use the group-level agent executor instead: "
    "--agent_func_path <file with AgentExecutor = coefgen.integrations.openrlhf_agent."
    "group_reward_executor(table, extract_answer)> and no --remote_rm_url")


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
        arr = object_array([x for row in rows for x in row]).reshape(-1, width.pop() if width else 1)
    if arr.ndim != 2:
        raise ValueError(f"expected answers of shape (n_prompts, n_samples), got shape {arr.shape}")
    n_prompts, n = arr.shape
    if n != table.K:
        raise ValueError(f"{n} samples per prompt but the table is for K = {table.K}: set "
                         f"n_samples_per_prompt = {table.K}, or load the table built for K = {n}")
    if arr.dtype.kind in "iu":
        return table.rewards(grouped_counts(arr)).astype(np.float64)
    flat = arr.reshape(-1).tolist()
    return rewards_by_group(table, flat, np.repeat(np.arange(n_prompts), n), invalid_reward).reshape(n_prompts, n)


def _loaded_by_openrlhf_single_turn() -> bool:
    """True while OpenRLHF's SingleTurnAgentExecutor is executing a --remote_rm_url file."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "openrlhf.utils.agent":
            return True
        frame = frame.f_back
    return False


def openrlhf_reward_func(table_or_path, extract_answer, n_samples_per_prompt: int | None = None,
                         invalid_reward: float | None = None):
    """``reward_func(queries, prompts, labels) -> {"rewards", "scores", "extra_logs"}`` for a
    batch holding whole groups (the ``n_samples_per_prompt`` samples of a prompt consecutive).

    Raises at once (a start-up error) when the calling code is OpenRLHF's per-sample
    ``--remote_rm_url`` loader, where whole groups never arrive (see ``PER_SAMPLE_HOOK``)."""
    if _loaded_by_openrlhf_single_turn():
        raise RuntimeError("coefgen: " + PER_SAMPLE_HOOK)
    table = as_table(table_or_path)
    n = table.K if n_samples_per_prompt is None else int(n_samples_per_prompt)
    if n != table.K:
        raise ValueError(f"n_samples_per_prompt = {n} but the table is for K = {table.K}: set it to {table.K}, "
                         f"or load the table built for K = {n}")

    def reward_func(queries, prompts=None, labels=None, **kwargs):
        texts = list(queries)
        if prompts is not None:
            texts = [q[len(p):] if isinstance(q, str) and isinstance(p, str) and q.startswith(p) else q
                     for q, p in zip(texts, prompts)]
        if len(texts) % n:
            raise ValueError(f"{len(texts)} samples do not split into groups of K = {n} consecutive samples"
                             + (": " + PER_SAMPLE_HOOK if len(texts) < n else ""))
        answers = [extract_answer(t) for t in texts]
        rewards = openrlhf_rewards(table, object_array(answers).reshape(-1, n), invalid_reward).reshape(-1)
        counts = grouped_counts_of(answers, n)
        try:
            import torch  # lazy: OpenRLHF expects tensors
        except ImportError:
            return {"rewards": rewards, "scores": rewards, "extra_logs": {"coefgen_count": counts}}
        r = torch.as_tensor(rewards, dtype=torch.float32)
        return {"rewards": r, "scores": r.clone(), "extra_logs": {"coefgen_count": torch.as_tensor(counts)}}

    return reward_func


def grouped_counts_of(answers, n: int) -> np.ndarray:
    """c_i within consecutive groups of n (None answers are singletons)."""
    return answer_counts(answer_codes(answers), np.arange(len(answers)) // n)


__all__ = ["openrlhf_rewards", "openrlhf_reward_func", "PER_SAMPLE_HOOK"]
