"""TRL (``GRPOTrainer``): a reward function ``f(prompts, completions, **kwargs) -> list[float]``.

TRL repeats each prompt ``num_generations`` times in a row, so a group is ``num_generations``
consecutive completions; the table's K must equal it. What TRL 1.16 hands a reward function
tells the group size: besides ``prompts``, ``completions``, ``completion_ids``, the dataset
columns and ``trainer_state``, it passes ``log_metric`` and ``log_extra``, bound methods of
the ``GRPOTrainer`` itself; the trainer's ``num_generations`` (training) and
``num_generations_eval`` (evaluation, ``trainer.model.training`` False) are read from there.
Without them (another caller), the group size is inferred from runs of equal consecutive
prompts, which detects a group *smaller* than K but not a larger one (16 completions of one
prompt look like two groups of 8 with the same prompt).
"""

from __future__ import annotations

from typing import Callable, Hashable

from .common import as_table, completion_text, group_rewards


def trl_group_size(kwargs: dict) -> tuple[int, str] | None:
    """(group size, GRPOConfig option) from the kwargs TRL passes to a reward function, or None.

    TRL ≥ 1.x passes ``log_metric``/``log_extra``, bound methods of the ``GRPOTrainer``; its
    ``num_generations`` is the group size in training, ``num_generations_eval`` in evaluation."""
    trainer = None
    for key in ("log_metric", "log_extra"):
        candidate = getattr(kwargs.get(key), "__self__", None)
        if candidate is not None and isinstance(getattr(candidate, "num_generations", None), int):
            trainer = candidate
            break
    if trainer is None:
        return None
    training = getattr(getattr(trainer, "model", None), "training", True)
    if training:
        return int(trainer.num_generations), "num_generations"
    g = getattr(trainer, "num_generations_eval", None) or trainer.num_generations
    return int(g), "num_generations_eval"


def group_size_mismatch(g: int, K: int, option: str = "num_generations") -> str:
    """The message for a trainer whose groups hold g completions when the table is for K."""
    return (f"TRL groups {g} completions per prompt ({option} = {g}) but the coefgen table is for K = {K}: "
            f"set GRPOConfig.{option} = {K}, or load the table built for K = {g}")


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


def _layout_error(n: int, K: int, prompts, trainer_g) -> str:
    """Why a batch of n completions does not form groups of K, as precisely as can be told."""
    if trainer_g is not None:  # the trainer says its groups hold K: this process holds a slice
        return (f"{n} completions do not form whole groups of num_generations = K = {K} consecutive "
                "completions of one prompt: this process holds a slice that splits a group; gather the "
                "completions of all processes first (gather=)")
    if prompts is not None:
        runs = prompt_runs(prompts)
        inner = runs[1:-1] or runs  # the first and last run may be cut by a process slice
        if len(set(inner)) == 1 and inner[0] < K and all(r <= inner[0] for r in runs):
            return (group_size_mismatch(inner[0], K, "num_generations (or num_generations_eval)")
                    + f" — the batch holds runs of {inner[0]} completions per prompt")
    return (f"{n} completions do not form whole groups of K = {K} consecutive completions of one prompt: "
            f"either GRPOConfig.num_generations ≠ {K} (set it to {K}, or load the table built for "
            "K = num_generations), or this process holds a slice that splits a group (gather=)")


def trl_reward_func(table_or_path, extract_answer: Callable[[str], Hashable | None],
                    num_generations: int | None = None, invalid_reward: float | None = None,
                    gather: Callable[[list], tuple[list, int]] | None = None, check_prompts: bool = True):
    """A TRL reward function ``f(prompts, completions, **kwargs) -> list[float]`` giving t[c].

    ``num_generations`` consecutive completions form a group; it must equal the table's K
    (checked here when given, and at every call against the trainer's own
    ``num_generations``/``num_generations_eval`` when TRL passes its trainer — TRL 1.16 does).
    Completions may be strings or chat-format lists of {"role", "content"} messages.
    ``extract_answer(text)`` returns a hashable final answer, or None when there is none.

    Multi-process training: TRL calls reward functions on each process's slice of the
    generation batch, and groups may straddle processes. Pass ``gather(local_answers) ->
    (all_answers, offset)`` returning the answers of every process, in global order, and the
    index of this process's first sample in them; counts are then taken on whole groups and
    this process's slice is returned. With accelerate::

        from accelerate import PartialState
        from accelerate.utils import gather_object
        def gather(local):
            sizes = gather_object([len(local)])
            return gather_object(local), sum(sizes[:PartialState().process_index])

    ``check_prompts``: refuse groups whose prompts differ (a sign of misaligned groups).
    """
    table = as_table(table_or_path)
    K = table.K
    if num_generations is not None and int(num_generations) != K:
        raise ValueError(group_size_mismatch(int(num_generations), K))

    def reward_func(prompts=None, completions=None, **kwargs) -> list[float]:
        if completions is None:
            raise TypeError("reward function called without completions")
        trainer_g = trl_group_size(kwargs)
        if trainer_g is not None and trainer_g[0] != K:
            raise ValueError(group_size_mismatch(trainer_g[0], K, trainer_g[1]))
        answers = [extract_answer(completion_text(c)) for c in completions]
        if gather is None:
            if len(answers) % K:
                raise ValueError(_layout_error(len(answers), K, prompts, trainer_g))
            if check_prompts and prompts is not None:
                if len(prompts) != len(answers):
                    raise ValueError(f"{len(prompts)} prompts for {len(answers)} completions")
                for start in range(0, len(prompts), K):
                    group = prompts[start:start + K]
                    if any(_prompt_key(p) != _prompt_key(group[0]) for p in group):
                        raise ValueError(f"completions {start}..{start + K - 1} do not share one prompt: "
                                         + _layout_error(len(answers), K, prompts, trainer_g))
            return group_rewards(table, answers, K, invalid_reward).tolist()
        all_answers, offset = gather(answers)
        all_answers = list(all_answers)
        if len(all_answers) % K:
            raise ValueError(f"{len(all_answers)} completions gathered from all processes do not split into "
                             f"groups of K = {K}: GRPOConfig.num_generations must be {K} (or load the table "
                             "built for K = num_generations)")
        rewards = group_rewards(table, all_answers, K, invalid_reward)
        return rewards[offset:offset + len(answers)].tolist()

    reward_func.__name__ = f"coefgen_{table.divergence.replace(':', '')}_{table.estimator}_K{table.K}"
    reward_func.table = table
    return reward_func


__all__ = ["trl_reward_func", "trl_group_size", "group_size_mismatch", "prompt_runs"]
