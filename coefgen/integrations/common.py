"""What every trainer integration shares: table families, the baseline check, composition with
a task reward, completion text, counts → t[c], token placement.

For the trainer modules (TRL, verl, OpenRLHF) the pieces to use are:

* ``resolve_family(table_or_path, divergence=, K=, baseline=)`` — a ``TableFamily`` from a
  RewardTable, a TableFamily, a path, or keywords meaning the default set's family;
* ``check_baseline(table_baseline, trainer_baseline, std_normalized, setting, fix,
  allow_std_normalization, trainer=)`` — THE rule matching a table's baseline to the trainer's
  advantage step (raises ``BaselineMismatch``, one line naming the setting and the fix; logs once
  what an allowed std normalisation costs);
* ``Composition(objective, beta, task_reward, log_p_ref)`` — validated at construction, applied
  per batch (``compose(...)``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Hashable, Sequence

import numpy as np

from ..runtime import (OBJECTIVES, RewardTable, TableFamily, answer_codes as _runtime_answer_codes, compose_rewards,
                       default_family, group_codes, is_missing, load)

__all__ = ["as_table", "resolve_family", "family_name", "check_baseline", "BaselineMismatch", "STD_COST", "Composition",
           "answer_codes", "group_codes", "is_missing", "rewards_by_group", "group_rewards", "completion_text",
           "place_token_level", "to_numpy", "object_array"]

log = logging.getLogger("coefgen")


def as_table(table_or_path) -> RewardTable:
    """A RewardTable from a table or a path to a JSON/NPZ table file (one size; for several
    sizes see ``resolve_family``)."""
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


def answer_codes(answers) -> np.ndarray:
    """Integer codes of answers (equal answers ↔ equal codes); a missing answer (None, NaN) is
    a fresh singleton: it matches nothing, not even another missing answer (the runtime's rule)."""
    return _runtime_answer_codes(list(answers) if not isinstance(answers, np.ndarray) else answers)


def rewards_by_group(table, answers: Sequence, group_ids, invalid_reward=None) -> np.ndarray:
    """t[c_i], c_i counted within i's group (``group_ids``, any order); missing answers are
    singletons (or get ``invalid_reward``). ``table``: a RewardTable (every group of size K)
    or a TableFamily (each group scored with its own size's table)."""
    answers = list(answers)
    if not answers:
        return np.zeros(0)
    return np.asarray(table.rewards_for(answers, group_ids, invalid_reward=invalid_reward), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Table families

def resolve_family(table_or_path=None, *, divergence=None, K=None, baseline=None) -> TableFamily:
    """The TableFamily an integration scores with: from a RewardTable (a family of one size), a
    TableFamily, a path to a table file, or — with no table — the keywords ``divergence=`` (default
    "kl"), ``K=`` (required) and ``baseline=`` (default "none") meaning
    ``coefgen.runtime.default_family(divergence, K, baseline)``."""
    if table_or_path is not None:
        if divergence is not None or K is not None or baseline is not None:
            raise TypeError("give either a table (RewardTable, TableFamily or path) or the keywords divergence=, K=, "
                            "baseline= of the default set, not both")
        return TableFamily.of(table_or_path)
    if K is None:
        raise TypeError("no table: pass a RewardTable, a TableFamily or a path, or K= (with divergence= and baseline=) "
                        "for the default set's family")
    return default_family("kl" if divergence is None else divergence, K=K, baseline="none" if baseline is None else baseline)


def family_name(family: TableFamily) -> str:
    """A short name for reward-function names and messages: kl_aqp_K8, kl_mean_K3-16."""
    ests = {family.table_for(k).estimator for k in family.sizes}
    est = ests.pop() if len(ests) == 1 else "mixed"
    sizes = f"K{family.K}" if len(family.sizes) == 1 else f"K{family.sizes[0]}-{family.K}"
    base = "" if family.baseline == "none" else f"_{family.baseline}"
    return f"{family.divergence.replace(':', '')}_{est}{base}_{sizes}"


# ---------------------------------------------------------------------------------------------
# The baseline check (one rule for every integration; helper modules call it)

STD_COST = ("group std normalisation divides each group's advantages by the group's reward std, which is not "
            "linear in the table: in a two-answer group only the sign of the cost difference survives, no fixed "
            "table is unbiased under it, and the table's certified bias and variance do not describe this run")

BASELINE_WORDS = {"none": "no group baseline", "loo": "a leave-one-out baseline", "mean": "the group-mean baseline"}


class BaselineMismatch(ValueError):
    """A table whose baseline does not match the trainer's advantage step (or std normalisation)."""


_logged: set = set()


def check_baseline(table_baseline: str, trainer_baseline: str, std_normalized: bool = False, setting: str = "",
                   fix: str = "", allow_std_normalization: bool = False, trainer: str = "the trainer") -> None:
    """Refuse a table the trainer's advantage step does not run as certified; return None if it does.

    ``table_baseline``: the table's (or family's) ``baseline``; ``trainer_baseline``: what the
    trainer subtracts from each reward — "none", "loo" (leave-one-out mean of the other samples
    of the group) or "mean" (the group mean, sample included); ``std_normalized``: the trainer
    divides each group's advantages by the group's reward std; ``setting``: the trainer option
    that decides it, as the user writes it (e.g. ``GRPOConfig.scale_rewards="group" (the
    default)``); ``fix``: what the user should change for the std refusal (the baseline
    refusal names the table to load itself).

    Matching is strict: none ↔ none, loo ↔ loo, mean ↔ mean. Group std normalisation is
    refused (BaselineMismatch naming ``setting`` and ``fix``) unless ``allow_std_normalization``,
    which logs once (per trainer and setting) what it costs. Messages are one line.

    Example (verl's GRPO with its default ``norm_adv_by_std_in_grpo=True``)::

        check_baseline(family.baseline, "mean", std_normalized=True,
                       setting="algorithm.adv_estimator=grpo with algorithm.norm_adv_by_std_in_grpo=True (the default)",
                       fix="set algorithm.norm_adv_by_std_in_grpo=False",
                       allow_std_normalization=allow, trainer="verl")
    """
    for name, value in (("table_baseline", table_baseline), ("trainer_baseline", trainer_baseline)):
        if value not in BASELINE_WORDS:
            raise ValueError(f"{name} must be one of {', '.join(BASELINE_WORDS)}, got {value!r}")
    if std_normalized:
        if not allow_std_normalization:
            raise BaselineMismatch(f"coefgen: {trainer} divides each group's advantages by the group's reward std "
                                   f"({setting}), which is not linear in the table: no fixed table is unbiased under "
                                   "it (in a two-answer group only the sign of the cost difference survives). "
                                   f"Fix: {fix}; or pass allow_std_normalization=True to accept the bias")
    if table_baseline != trainer_baseline:
        raise BaselineMismatch(
            f"coefgen: {trainer} uses {BASELINE_WORDS[trainer_baseline]} ({setting}) but the table is made for "
            f"baseline {table_baseline!r}: load the table with baseline {trainer_baseline!r} for the same group "
            f"size (a file named ...-{trainer_baseline}-K<K>.json, or default_family(divergence, K=..., "
            f"baseline={trainer_baseline!r}))" if trainer_baseline != "none" else
            f"coefgen: {trainer} uses {BASELINE_WORDS[trainer_baseline]} ({setting}) but the table is made for "
            f"baseline {table_baseline!r}: load the table with baseline 'none' for the same group size")
    if std_normalized:  # allowed (else refused above): say once what it costs
        key = (trainer, setting)
        if key not in _logged:
            _logged.add(key)
            log.warning("coefgen: allow_std_normalization=True with %s (%s): %s", trainer, setting, STD_COST)


# ---------------------------------------------------------------------------------------------
# Composition with a task reward

class Composition:
    """How an integration turns t[c] into the reward it returns (see ``compose_rewards``).

    ``objective``: "kl_regularized" (R + beta*log_p_ref(answer) - beta*t[c]), "entropy_bonus"
    (R - beta*t[c]) or "consensus" (R + beta*t[c]); required, no default sign.
    ``task_reward(prompt, completion, answer, **fields) -> float``: R per sample (default 0);
    ``completion`` is the completion's text, ``answer`` what the extractor returned (None when
    missing), ``fields`` the sample's other per-sample columns (TRL: the dataset columns, e.g.
    ``solution``; OpenRLHF: ``label``). ``log_p_ref``: a callable ``answer -> float`` or a
    mapping answer → log p_ref (kl_regularized only; default 0, a uniform reference).
    A sample without an answer gets ``invalid_reward`` as its whole reward when the integration
    is given one; otherwise it is composed like any other sample with t[1]."""

    def __init__(self, objective: str, beta: float = 1.0, task_reward=None, log_p_ref=None):
        if objective is None:
            raise TypeError(f"objective= is required (no default sign for t[c]): one of {', '.join(OBJECTIVES)}; "
                            "'consensus' with beta=1 returns t[c] itself")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective= is required and must be one of {', '.join(OBJECTIVES)} (it fixes the sign "
                             f"of t[c] in the reward), got {objective!r}")
        if task_reward is not None and not callable(task_reward):
            raise TypeError("task_reward must be a callable (prompt, completion, answer, **fields) -> float")
        if log_p_ref is not None:
            if objective != "kl_regularized":
                raise ValueError(f"log_p_ref is the reference of objective 'kl_regularized'; {objective!r} has none")
            if not callable(log_p_ref) and not isinstance(log_p_ref, Mapping):
                raise TypeError("log_p_ref must be a callable answer -> float or a mapping answer -> log p_ref")
        compose_rewards(np.zeros(1), objective, beta)  # validates beta
        self.objective, self.beta, self.task_reward, self.log_p_ref = objective, float(beta), task_reward, log_p_ref

    def __repr__(self) -> str:
        return f"Composition(objective={self.objective!r}, beta={self.beta})"

    def _log_p_ref(self, answer) -> float:
        if callable(self.log_p_ref):
            value = self.log_p_ref(answer)
        else:
            key = None if is_missing(answer) else answer
            if key not in self.log_p_ref:
                raise ValueError(f"log_p_ref has no entry for answer {answer!r}" +
                                 (" (a missing answer: add a None entry, or pass invalid_reward)" if key is None else ""))
            value = self.log_p_ref[key]
        return _finite(value, f"log_p_ref({answer!r})")

    def compose(self, table_rewards, answers, prompts=None, texts=None, fields=None, invalid_reward=None) -> np.ndarray:
        """The rewards to return for one batch (numpy float64): ``table_rewards`` t[c_i] and, per
        sample, its answer, prompt, completion text and extra fields (a list of dicts)."""
        t = np.asarray(table_rewards, dtype=np.float64)
        n = len(t)
        R = None
        if self.task_reward is not None:
            prompts = [None] * n if prompts is None else list(prompts)
            texts = [None] * n if texts is None else list(texts)
            fields = [{}] * n if fields is None else list(fields)
            R = np.array([_finite(self.task_reward(prompts[i], texts[i], answers[i], **fields[i]),
                                  f"task_reward of sample {i}") for i in range(n)], dtype=np.float64)
        missing = np.array([is_missing(a) for a in answers], dtype=bool) if n else np.zeros(0, dtype=bool)
        lp = None
        if self.log_p_ref is not None:
            skip = missing if invalid_reward is not None else np.zeros(n, dtype=bool)
            lp = np.array([0.0 if skip[i] else self._log_p_ref(answers[i]) for i in range(n)], dtype=np.float64)
        out = np.asarray(compose_rewards(t, self.objective, self.beta, R, lp), dtype=np.float64)
        if invalid_reward is not None and missing.any():
            out[missing] = _finite(invalid_reward, "invalid_reward")
        return out


def _finite(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} returned {value!r}, not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} is {v}: rewards must be finite")
    return v


def group_rewards(table_or_path, answers: Sequence[Hashable | None], group_size: int | None = None,
                  invalid_reward: float | None = None) -> np.ndarray:
    """Rewards for a flat list of answers in consecutive groups of ``group_size`` (default: the
    family's only size), each group scored with the table of that size (t[c] alone, no composition)."""
    family = TableFamily.of(table_or_path)
    if group_size is None:
        if len(family.sizes) != 1:
            raise ValueError(f"group_size is required with a family of several sizes ({family!r})")
        group_size = family.K
    g = int(group_size)
    family.check_sizes([g])
    if len(answers) % g:
        raise ValueError(f"{len(answers)} samples do not split into groups of {g}: a group is partial "
                         "(in multi-process training, gather the completions of all processes first)")
    return rewards_by_group(family, answers, np.arange(len(answers)) // g, invalid_reward)


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
