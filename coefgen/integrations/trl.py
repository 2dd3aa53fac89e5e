"""TRL (``GRPOTrainer``, ``RLOOTrainer``): a reward function ``f(prompts, completions, **kwargs)``.

TRL repeats each prompt ``num_generations`` times in a row, so a group is ``num_generations``
consecutive completions (of the whole generation batch, across processes). What TRL 1.16 hands
a reward function identifies the trainer: besides ``prompts``, ``completions``,
``completion_ids``, the dataset columns and ``trainer_state``, it passes ``log_metric`` and
``log_extra``, bound methods of the trainer itself. From the trainer this module reads:

* the group size: ``num_generations`` (training) / ``num_generations_eval`` (evaluation,
  ``trainer.model.training`` False), scored with the family's table of that size;
* the advantage step: ``GRPOTrainer`` subtracts the group mean (baseline "mean") and divides by
  the group's std while ``scale_rewards == "group"`` (the default: refused unless
  ``allow_std_normalization=True``); ``"batch"`` divides by one std over the whole batch
  (accepted: a positive step size shared by every sample of the batch); ``"none"`` divides by
  nothing. ``multi_objective_aggregation="normalize_then_sum"`` normalises each reward function
  by its group std (refused like ``"group"``). ``RLOOTrainer`` subtracts the leave-one-out mean
  (baseline "loo"); ``normalize_advantages=True`` whitens over the batch (accepted, as
  ``"batch"``); ``reward_clip_range`` clips the summed reward (refused: not linear);
* the processes: ``trainer.accelerator`` (``num_processes``, ``process_index``). TRL calls the
  reward function on each process's slice (``len(prompts)`` samples per process; the process
  with index p holds samples p*n .. p*n+n-1 of the batch) and a group may straddle processes,
  so under several processes the function gathers the answers of every process itself
  (``accelerate.utils.gather_object``), scores whole groups and returns its own slice.

Called outside a TRL trainer (no ``log_metric`` in the kwargs) nothing can be detected: the
groups are ``num_generations`` consecutive completions (or the family's only size) and no
baseline check runs.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Callable, Hashable

import numpy as np

from ..runtime import TableFamily, is_missing
from .common import (BaselineMismatch, Composition, check_baseline, completion_text, family_name, resolve_family,
                     rewards_by_group)

SKIP_KEYS = ("trainer_state", "log_metric", "log_extra", "environments")


def trl_trainer(kwargs: dict):
    """The TRL trainer behind a reward-function call (via the bound ``log_metric``/``log_extra``), or None."""
    for key in ("log_metric", "log_extra"):
        candidate = getattr(kwargs.get(key), "__self__", None)
        if candidate is not None and isinstance(getattr(candidate, "num_generations", None), int):
            return candidate
    return None


def trl_group_size(kwargs_or_trainer) -> tuple[int, str] | None:
    """(group size, config option) of the trainer behind a call (or of a trainer), or None."""
    trainer = trl_trainer(kwargs_or_trainer) if isinstance(kwargs_or_trainer, dict) else kwargs_or_trainer
    if trainer is None:
        return None
    training = getattr(getattr(trainer, "model", None), "training", True)
    if training:
        return int(trainer.num_generations), "num_generations"
    g = getattr(trainer, "num_generations_eval", None) or trainer.num_generations
    return int(g), "num_generations_eval"


def _class_names(obj) -> set:
    return {c.__name__ for c in type(obj).__mro__}


def trl_advantage(trainer) -> dict:
    """What the trainer's advantage step does, read from the trainer object (TRL 1.16):
    {"trainer", "baseline", "std_normalized", "setting", "fix"}; ValueError for a trainer this
    module cannot read, or a setting coefgen refuses outright."""
    names = _class_names(trainer)
    if "RLOOTrainer" in names or (hasattr(trainer, "normalize_advantages") and not hasattr(trainer, "scale_rewards")):
        clip = getattr(trainer, "reward_clip_range", None)
        if clip is not None:
            raise BaselineMismatch(f"coefgen: RLOOTrainer clips the summed reward (RLOOConfig.reward_clip_range = "
                                   f"{tuple(clip)}), which is not linear in t[c] and biases it: set reward_clip_range=None")
        whiten = bool(getattr(trainer, "normalize_advantages", False))
        return {"trainer": "TRL RLOOTrainer", "baseline": "loo", "std_normalized": False,
                "setting": "RLOOTrainer's leave-one-out advantage" + (", normalize_advantages=True" if whiten else ""),
                "fix": ""}
    if "GRPOTrainer" in names or hasattr(trainer, "scale_rewards"):
        scale = getattr(trainer, "scale_rewards", "group")
        scale = {True: "group", False: "none"}.get(scale, scale)
        agg = getattr(trainer, "multi_objective_aggregation", "sum_then_normalize")
        if agg == "normalize_then_sum":
            return {"trainer": "TRL GRPOTrainer", "baseline": "mean", "std_normalized": True,
                    "setting": 'GRPOConfig.multi_objective_aggregation="normalize_then_sum"',
                    "fix": 'set multi_objective_aggregation="sum_then_normalize" with scale_rewards="none" '
                           '(or "batch") and load the baseline "mean" table'}
        if scale not in ("group", "batch", "none"):
            raise ValueError(f"coefgen: unknown GRPOConfig.scale_rewards {scale!r} (TRL 1.16: group, batch, none)")
        setting = f"GRPOConfig.scale_rewards={scale!r}" + (" (the default)" if scale == "group" else "")
        return {"trainer": "TRL GRPOTrainer", "baseline": "mean", "std_normalized": scale == "group",
                "setting": setting,
                "fix": 'set GRPOConfig(scale_rewards="none") (or "batch") and load the baseline "mean" table'}
    raise ValueError(f"coefgen: cannot read the advantage settings of {type(trainer).__name__} (known: TRL GRPOTrainer, "
                     "RLOOTrainer); its baseline cannot be checked")


def check_trl_trainer(trainer, reward_func=None) -> None:
    """Check coefgen reward functions against a constructed TRL trainer before training.

    Call it right after building the trainer (``check_trl_trainer(trainer)``): every coefgen
    reward function in ``trainer.reward_funcs`` (or just ``reward_func``) is checked against the
    trainer's advantage settings and group sizes; the same check also runs at the first call."""
    funcs = [reward_func] if reward_func is not None else [f for f in getattr(trainer, "reward_funcs", [])
                                                           if hasattr(f, "coefgen_check")]
    for f in funcs:
        f.coefgen_check(trainer)


def group_size_mismatch(g: int, family: TableFamily, option: str = "num_generations") -> str:
    """The message for a trainer whose groups hold g completions when the family lacks that size."""
    sizes = ", ".join(str(k) for k in family.sizes) if len(family.sizes) <= 6 else f"{family.sizes[0]}..{family.K}"
    return (f"TRL groups {g} completions per prompt ({option} = {g}) but the coefgen table family has no table for "
            f"{g} (sizes {sizes}): set GRPOConfig.{option} to one of them, or load the table built for K = {g}")


def prompt_runs(prompts) -> list[int]:
    """Lengths of the runs of equal consecutive prompts."""
    runs: list[int] = []
    previous = object()
    for p in prompts:
        key = _prompt_key(p)
        if runs and key == previous:
            runs[-1] += 1
        else:
            runs.append(1)
        previous = key
    return runs


def _prompt_key(prompt):
    return prompt if isinstance(prompt, str) else repr(prompt)


def _prompt_digest(prompt) -> str:
    return hashlib.sha256(_prompt_key(prompt).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _same_answer(a, b) -> bool:
    if is_missing(a) or is_missing(b):
        return is_missing(a) and is_missing(b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 (a comparison that fails is not equality)
        return False


def _check_groups(prompt_keys, g: int, where: str) -> None:
    for start in range(0, len(prompt_keys), g):
        group = prompt_keys[start:start + g]
        if any(p != group[0] for p in group):
            raise ValueError(f"coefgen: completions {start}..{start + g - 1} {where} do not share one prompt: the "
                             f"groups are not {g} consecutive completions of one prompt (num_generations = {g}?)")


def _processes(trainer):
    """(number of processes, this process's index, gather_object) of the run."""
    acc = getattr(trainer, "accelerator", None) if trainer is not None else None
    if acc is not None and int(getattr(acc, "num_processes", 1)) > 1:
        def gather_object(obj):
            from accelerate.utils import gather_object as gather  # lazy: present wherever TRL is

            return gather(obj)

        return int(acc.num_processes), int(acc.process_index), gather_object
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        def gather_object(obj):
            out = [None] * dist.get_world_size()
            dist.all_gather_object(out, obj)
            return [x for part in out for x in part]

        return dist.get_world_size(), dist.get_rank(), gather_object
    return 1, 0, None


def trl_reward_func(table_or_path=None, extract_answer: Callable[[str], Hashable | None] | None = None, *,
                    objective: str | None = None, beta: float = 1.0, task_reward=None, log_p_ref=None,
                    divergence: str | None = None, K: int | None = None, baseline: str | None = None,
                    num_generations: int | None = None, invalid_reward: float | None = None,
                    gather: Callable[[list], tuple[list, int]] | None = None, check_prompts: bool = True,
                    allow_std_normalization: bool = False):
    """A TRL reward function ``f(prompts, completions, **kwargs) -> list[float]``.

    ``table_or_path``: a RewardTable, a TableFamily, or a path to a table file; or no table and
    the keywords ``divergence=`` (default "kl"), ``K=``, ``baseline=`` (default "none") for the
    default set's family (every group size up to K). Each group (``num_generations``
    consecutive completions) is scored with the table of its own size.

    ``extract_answer(text)`` returns a hashable final answer, or None (NaN) when there is none;
    completions may be strings or chat-format lists of {"role", "content"} messages.

    ``objective`` (required): "kl_regularized", "entropy_bonus" or "consensus", with ``beta``,
    ``task_reward(prompt, completion_text, answer, **columns) -> float`` (``columns``: the
    sample's dataset columns, e.g. ``solution``) and ``log_p_ref`` (kl_regularized); see
    ``coefgen.runtime.compose_rewards``. A sample without an answer gets ``invalid_reward`` as its
    whole reward when given (else t[1], composed like any other).

    Checked at the first call (or before training with ``check_trl_trainer(trainer)``): the
    trainer's advantage step against the table's baseline (``GRPOTrainer`` → "mean",
    ``RLOOTrainer`` → "loo"; GRPO's default ``scale_rewards="group"`` refused unless
    ``allow_std_normalization=True``), and at every call the group size. No reward is returned
    before these checks pass.

    Several processes: the answers of every process are gathered by the function itself.
    ``gather(local_answers) -> (all_answers, offset)`` replaces that gather (optional); its
    result is checked: this process's answers must sit at ``offset`` (TRL's slice,
    process_index * len(local) when the trainer is known), the total must be num_processes *
    len(local), and the groups whole.
    """
    if extract_answer is None or not callable(extract_answer):
        raise TypeError("trl_reward_func needs extract_answer, a callable text -> answer (or None)")
    composition = Composition(objective, beta, task_reward, log_p_ref)
    family = resolve_family(table_or_path, divergence=divergence, K=K, baseline=baseline)
    if num_generations is not None:
        if not family.signal_free(int(num_generations)) and int(num_generations) not in family.sizes:
            raise ValueError(group_size_mismatch(int(num_generations), family))
    checked: set = set()

    def check(trainer) -> None:
        """The advantage settings of ``trainer`` against the family's baseline (once per trainer)."""
        if id(trainer) in checked:
            return
        adv = trl_advantage(trainer)
        check_baseline(family.baseline, adv["baseline"], adv["std_normalized"], adv["setting"], adv["fix"],
                       allow_std_normalization, trainer=adv["trainer"])
        sizes = [(int(trainer.num_generations), "num_generations")]
        if getattr(trainer, "eval_dataset", None) is not None:  # evaluation groups: num_generations_eval
            sizes.append((int(getattr(trainer, "num_generations_eval", None) or trainer.num_generations),
                          "num_generations_eval"))
        for g, option in sizes:
            if not family.signal_free(g) and g not in family.sizes:
                raise ValueError(group_size_mismatch(g, family, option))
        checked.add(id(trainer))

    def reward_func(prompts=None, completions=None, **kwargs) -> list[float]:
        if completions is None:
            raise TypeError("reward function called without completions")
        trainer = trl_trainer(kwargs)
        if trainer is not None:
            check(trainer)
        tg = trl_group_size(trainer) if trainer is not None else None
        if tg is not None:
            g, option = tg
        elif num_generations is not None:
            g, option = int(num_generations), "num_generations"
        elif len(family.sizes) == 1:
            g, option = family.K, "num_generations"
        else:
            raise ValueError("coefgen: called outside a TRL trainer with a family of several sizes: pass "
                             "num_generations= to trl_reward_func")
        if not family.signal_free(g) and g not in family.sizes:
            raise ValueError(group_size_mismatch(g, family, option))
        n = len(completions)
        if prompts is not None and len(prompts) != n:
            raise ValueError(f"coefgen: {len(prompts)} prompts for {n} completions")
        world, rank, gather_object = _processes(trainer)
        if world > 1 and gather is None:
            # every process must reach the gather: a local failure travels with the records and is
            # raised on every process afterwards (instead of leaving the others waiting)
            try:
                texts = [completion_text(c) for c in completions]
                answers = [extract_answer(t) for t in texts]
                keys = [_prompt_digest(p) for p in prompts] if (check_prompts and prompts is not None) else [None] * n
                mine = [(rank, i, n, keys[i], a) for i, a in enumerate(answers)]
            except Exception as e:  # noqa: BLE001 (re-raised below, on every process)
                mine, failure = [(rank, -1, n, None, f"{type(e).__name__}: {e}")], e
            else:
                failure = None
            records = gather_object(mine)
            failed = [rec for rec in records if rec[1] == -1]
            if failed:
                if failure is not None:
                    raise failure
                raise RuntimeError(f"coefgen: process {failed[0][0]} failed to extract its answers ({failed[0][4][:200]})")
        else:
            texts = [completion_text(c) for c in completions]
            answers = [extract_answer(t) for t in texts]
        if gather is not None:
            all_answers, offset = _checked_gather(gather, answers, world, rank, trainer is not None)
            local = slice(offset, offset + n)
        elif world > 1:
            all_answers, all_keys, offset = _check_records(records, world, rank, n)
            if check_prompts and prompts is not None:
                _check_groups(all_keys, g, "of the gathered batch")
            local = slice(offset, offset + n)
        else:
            all_answers, local = answers, slice(0, n)
            if check_prompts and prompts is not None and len(answers) % g == 0:
                _check_groups([_prompt_key(p) for p in prompts], g, "of this batch")
        if len(all_answers) % g:
            raise ValueError(_layout_error(len(all_answers), g, option, prompts if world == 1 else None,
                                           world > 1 or gather is not None))
        table_rewards = rewards_by_group(family, all_answers, np.arange(len(all_answers)) // g)[local]
        fields = [{k: v[i] for k, v in kwargs.items() if k not in SKIP_KEYS and isinstance(v, list) and len(v) == n}
                  for i in range(n)]
        out = composition.compose(table_rewards, answers, prompts, texts, fields, invalid_reward)
        return [float(x) for x in out]

    reward_func.__name__ = f"coefgen_{family_name(family)}"
    reward_func.family = family
    reward_func.table = family.table_for(family.K)
    reward_func.composition = composition
    reward_func.coefgen_check = check
    return reward_func


def _layout_error(total: int, g: int, option: str, prompts, gathered: bool) -> str:
    """Why a batch of ``total`` completions does not form groups of g, as precisely as can be told."""
    if prompts is not None:
        runs = prompt_runs(prompts)
        inner = runs[1:-1] or runs
        if len(set(inner)) == 1 and inner[0] < g and all(r <= inner[0] for r in runs):
            return (f"coefgen: the batch holds runs of {inner[0]} completions per prompt but the groups are {g} "
                    f"({option} = {g}): set GRPOConfig.{option} = {inner[0]} or load a table family with that size")
    where = "gathered from all processes" if gathered else "in this batch"
    return (f"coefgen: {total} completions {where} do not split into groups of {option} = {g} consecutive "
            "completions of one prompt" + ("" if gathered else
                                           " (a process slice that splits a group? the gather runs only when TRL "
                                           "passes its trainer or torch.distributed is initialised)"))


def _check_records(records, world: int, rank: int, n: int):
    """Answers, prompt keys and this process's offset from the gathered (rank, i, n, key, answer)
    records; ValueError unless every process's records arrived complete and in order."""
    expected = [(r, i) for r in range(world) for i in range(n)]
    got = [(rec[0], rec[1]) for rec in records]
    sizes = {rec[0]: rec[2] for rec in records}
    if any(s != n for s in sizes.values()):
        raise ValueError(f"coefgen: the processes hold different numbers of completions {sorted(sizes.items())}; TRL "
                         "slices the batch as process_index * len(prompts), so every process must hold the same number")
    if got != expected:
        raise ValueError(f"coefgen: the gathered answers are not every process's answers in process order "
                         f"({len(got)} records for {world} processes x {n}): cannot place the groups")
    return [rec[4] for rec in records], [rec[3] for rec in records], rank * n


def _checked_gather(gather, answers, world: int, rank: int, trainer_known: bool):
    """Call a user ``gather`` and check its result against this process's answers."""
    n = len(answers)
    result = gather(answers)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError("gather(local_answers) must return (all_answers, offset)")
    all_answers, offset = result
    all_answers = list(all_answers)
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise TypeError(f"gather returned offset {offset!r}, not an integer")
    offset = int(offset)
    if not 0 <= offset <= len(all_answers) - n:
        raise ValueError(f"coefgen: gather returned offset {offset} for {n} local answers in {len(all_answers)} "
                         "gathered: out of range")
    if trainer_known or world > 1:
        if len(all_answers) != world * n or offset != rank * n:
            raise ValueError(f"coefgen: gather returned {len(all_answers)} answers with offset {offset}, but TRL's "
                             f"{world} process(es) of {n} completions each make {world * n} with this process "
                             f"(index {rank}) at offset {rank * n}")
    if not all(_same_answer(a, b) for a, b in zip(all_answers[offset:offset + n], answers)):
        raise ValueError(f"coefgen: gather returned answers whose slice at offset {offset} is not this process's "
                         "answers: the gathered order is wrong, rewards would belong to other samples")
    return all_answers, offset


__all__ = ["trl_reward_func", "check_trl_trainer", "trl_trainer", "trl_group_size", "trl_advantage",
           "group_size_mismatch", "prompt_runs"]
