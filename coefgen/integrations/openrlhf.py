"""OpenRLHF: rewards over the ``n_samples_per_prompt`` samples of a prompt (numpy only).

OpenRLHF 0.11.2 calls a ``--remote_rm_url`` Python file's ``reward_func(queries, prompts,
labels)`` once per sample (``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor``, batch
size 1), so no count over a group can be taken there; ``openrlhf_reward_func`` therefore
refuses to be loaded by that executor (a start-up error) instead of failing at every sample.
The group-level hook is a custom agent executor (``--agent_func_path``):
``coefgen.integrations.openrlhf_agent.group_reward_executor`` (it imports OpenRLHF).
``openrlhf_reward_func`` serves callers that hand whole groups (a reward server of your own).

OpenRLHF does not show its advantage settings to a reward function: both functions here take
``advantage_estimator=`` (the value of ``--algo.advantage.estimator``) and check the table's
baseline against it at construction (``check_openrlhf``).
"""

from __future__ import annotations

import sys

import numpy as np

from ..runtime import answer_counts
from .common import Composition, answer_codes, check_baseline, object_array, resolve_family, rewards_by_group

PER_SAMPLE_HOOK = (
    "OpenRLHF calls a --remote_rm_url reward_func once per sample (openrlhf/utils/agent.py, "
    "SingleTurnAgentExecutor: batch size 1), so coefgen cannot count answers over the "
    "n_samples_per_prompt samples of a prompt there. Use the group-level agent executor instead: "
    "--agent_func_path <file with AgentExecutor = coefgen.integrations.openrlhf_agent."
    "group_reward_executor(table, extract_answer)> and no --remote_rm_url")


# --algo.advantage.estimator → (baseline, group std normalisation) of OpenRLHF 0.11.2's
# ExperienceMaker.compute_advantages_and_returns
ESTIMATORS = {
    "rloo": ("loo", False),               # r - mean of the other samples of the group
    "dr_grpo": ("mean", False),           # r - group mean
    "reinforce_baseline": ("mean", False),  # r - group mean, then whitening over the batch (one scalar)
    "group_norm": ("mean", True),         # (r - group mean) / group std
    "reinforce": ("none", False),         # no group baseline; whitening over the batch
    "gae": ("none", False),               # a learned critic, not a group baseline
}
REFUSED_ESTIMATORS = {
    "flash_reinforce": "flash_reinforce subtracts the mean of the whole rollout batch (no prompt group), which no "
                       "coefgen table is made for: use rloo (loo table) or dr_grpo (mean table)",
}


def openrlhf_advantage(advantage_estimator) -> dict:
    """{"trainer", "baseline", "std_normalized", "setting", "fix"} for an OpenRLHF 0.11.2
    ``--algo.advantage.estimator`` value (the reward function cannot see it: pass it)."""
    if advantage_estimator is None:
        raise TypeError("advantage_estimator= is required: OpenRLHF does not show its --algo.advantage.estimator to "
                        f"a reward function, so coefgen needs it to check the table's baseline (one of "
                        f"{', '.join(list(ESTIMATORS) + list(REFUSED_ESTIMATORS))})")
    est = str(advantage_estimator)
    setting = f"--algo.advantage.estimator {est}"
    if est in REFUSED_ESTIMATORS:
        raise ValueError(f"coefgen: OpenRLHF {setting}: {REFUSED_ESTIMATORS[est]}")
    if est not in ESTIMATORS:
        raise ValueError(f"coefgen: unknown OpenRLHF advantage estimator {est!r} (OpenRLHF 0.11.2: "
                         f"{', '.join(list(ESTIMATORS) + list(REFUSED_ESTIMATORS))})")
    baseline, std = ESTIMATORS[est]
    return {"trainer": "OpenRLHF", "baseline": baseline, "std_normalized": std, "setting": setting,
            "fix": "use --algo.advantage.estimator dr_grpo (mean table) or rloo (loo table)"}


def check_openrlhf(family, advantage_estimator, allow_std_normalization: bool = False) -> None:
    """The family's baseline against OpenRLHF's advantage estimator (``check_baseline``)."""
    adv = openrlhf_advantage(advantage_estimator)
    check_baseline(family.baseline, adv["baseline"], adv["std_normalized"], adv["setting"], adv["fix"],
                   allow_std_normalization, trainer=adv["trainer"])


def _group_size(family, n_samples_per_prompt) -> int:
    if n_samples_per_prompt is None:
        if len(family.sizes) != 1:
            raise TypeError(f"n_samples_per_prompt= is required with a family of several sizes ({family!r})")
        return family.K
    n = int(n_samples_per_prompt)
    if not family.signal_free(n) and n not in family.sizes:
        raise ValueError(f"n_samples_per_prompt = {n} but the coefgen table family has no table for {n} "
                         f"(sizes {', '.join(map(str, family.sizes))}): set --rollout.n_samples_per_prompt to one of "
                         f"them, or load the table built for K = {n}")
    return n


def openrlhf_rewards(table_or_path=None, answers_2d=None, *, advantage_estimator=None, objective=None, beta=1.0,
                     task_reward=None, log_p_ref=None, invalid_reward=None, divergence=None, K=None, baseline=None,
                     allow_std_normalization: bool = False) -> np.ndarray:
    """Rewards of shape (n_prompts, n_samples_per_prompt) for answers of that shape: integer
    answer ids (a numpy array), or nested lists of hashables (None/NaN: no answer). Each row is
    a group, scored with the family's table of its size and composed per ``objective``
    (``task_reward`` is called as ``task_reward(None, None, answer)``: no text here)."""
    composition = Composition(objective, beta, task_reward, log_p_ref)
    family = resolve_family(table_or_path, divergence=divergence, K=K, baseline=baseline)
    check_openrlhf(family, advantage_estimator, allow_std_normalization)
    if answers_2d is None:
        raise TypeError("openrlhf_rewards needs answers of shape (n_prompts, n_samples_per_prompt)")
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
    _group_size(family, n)
    flat = arr.reshape(-1).tolist()
    t = rewards_by_group(family, flat, np.repeat(np.arange(n_prompts), n))
    return composition.compose(t, flat, invalid_reward=invalid_reward).reshape(n_prompts, n)


def _loaded_by_openrlhf_single_turn() -> bool:
    """True while OpenRLHF's SingleTurnAgentExecutor is executing a --remote_rm_url file."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "openrlhf.utils.agent":
            return True
        frame = frame.f_back
    return False


def openrlhf_reward_func(table_or_path=None, extract_answer=None, *, advantage_estimator=None, objective=None,
                         beta=1.0, task_reward=None, log_p_ref=None, n_samples_per_prompt: int | None = None,
                         invalid_reward: float | None = None, divergence=None, K=None, baseline=None,
                         allow_std_normalization: bool = False):
    """``reward_func(queries, prompts, labels) -> {"rewards", "scores", "extra_logs"}`` for a
    batch holding whole groups: the ``n_samples_per_prompt`` samples of a prompt consecutive,
    one prompt and one label per query (OpenRLHF's convention: ``queries[i]`` is prompt + response
    of sample i, ``prompts[i]`` its prompt, ``labels[i]`` its label).

    ``advantage_estimator`` (required: OpenRLHF does not show it to a reward function) is checked
    against the table's baseline at construction (rloo → loo; dr_grpo, reinforce_baseline → mean;
    group_norm → mean with std normalisation, refused unless ``allow_std_normalization``;
    reinforce, gae → none; flash_reinforce refused). ``objective``/``beta``/``task_reward``/
    ``log_p_ref``: see ``coefgen.runtime.compose_rewards`` (``task_reward(prompt, response,
    answer, label=label)``). Refused per call: prompts or labels not one per query, a group whose
    prompts differ, a batch that does not split into whole groups.

    Raises at once (a start-up error) when the calling code is OpenRLHF's per-sample
    ``--remote_rm_url`` loader, where whole groups never arrive (see ``PER_SAMPLE_HOOK``)."""
    if _loaded_by_openrlhf_single_turn():
        raise RuntimeError("coefgen: " + PER_SAMPLE_HOOK)
    if extract_answer is None or not callable(extract_answer):
        raise TypeError("openrlhf_reward_func needs extract_answer, a callable text -> answer (or None)")
    composition = Composition(objective, beta, task_reward, log_p_ref)
    family = resolve_family(table_or_path, divergence=divergence, K=K, baseline=baseline)
    check_openrlhf(family, advantage_estimator, allow_std_normalization)
    n = _group_size(family, n_samples_per_prompt)

    def reward_func(queries, prompts=None, labels=None, **kwargs):
        queries = list(queries)
        m = len(queries)
        for name, values in (("prompts", prompts), ("labels", labels)):
            if values is not None and len(values) != m:
                raise ValueError(f"coefgen: {m} queries but {len(values)} {name}: OpenRLHF passes one prompt and one "
                                 f"label per query (repeat each prompt for its {n} samples); refusing to pair them")
        if m % n:
            raise ValueError(f"coefgen: {m} samples do not split into groups of n_samples_per_prompt = {n} consecutive "
                             "samples" + (": " + PER_SAMPLE_HOOK if m < n else ""))
        if prompts is not None:
            keys = [p if isinstance(p, str) else repr(p) for p in prompts]
            for start in range(0, m, n):
                if any(k != keys[start] for k in keys[start:start + n]):
                    raise ValueError(f"coefgen: samples {start}..{start + n - 1} do not share one prompt: the batch is "
                                     f"not groups of {n} consecutive samples of one prompt")
        texts = [q[len(p):] if isinstance(q, str) and isinstance(p, str) and q.startswith(p) else q
                 for q, p in zip(queries, prompts if prompts is not None else [None] * m)]
        answers = [extract_answer(t) for t in texts]
        t = rewards_by_group(family, answers, np.arange(m) // n)
        fields = [{"label": labels[i]} if labels is not None else {} for i in range(m)]
        rewards = composition.compose(t, answers, prompts, texts, fields, invalid_reward)
        counts = grouped_counts_of(answers, n)
        try:
            import torch  # lazy: OpenRLHF expects tensors
        except ImportError:
            return {"rewards": rewards, "scores": rewards, "extra_logs": {"coefgen_count": counts}}
        r = torch.as_tensor(rewards, dtype=torch.float32)
        return {"rewards": r, "scores": r.clone(), "extra_logs": {"coefgen_count": torch.as_tensor(counts)}}

    reward_func.family = family
    reward_func.composition = composition
    return reward_func


def grouped_counts_of(answers, n: int) -> np.ndarray:
    """c_i within consecutive groups of n (missing answers are singletons)."""
    return answer_counts(answer_codes(answers), np.arange(len(answers)) // n)


__all__ = ["openrlhf_rewards", "openrlhf_reward_func", "openrlhf_advantage", "check_openrlhf", "ESTIMATORS", "PER_SAMPLE_HOOK"]
