"""OpenRLHF ≥ 0.11: a custom agent executor that rewards each sample with t[c] over its group.

OpenRLHF's ``RolloutRayActor.generate_responses`` runs ``executor.execute(prompt, label,
sampling_params, ...)`` ``n_samples_per_prompt`` times concurrently for one prompt
(``asyncio.gather``), all with the same ``sampling_params`` object. This executor generates
each sample with OpenRLHF's own ``SingleTurnAgentExecutor`` (no remote reward), extracts its
answer, waits for the other samples of the same call, and sets ``reward``/``scores`` to t[c]
and ``extra_logs["coefgen_count"]`` to c. Use it with ``--agent_func_path``::

    # coefgen_agent.py
    from coefgen.integrations.openrlhf_agent import group_reward_executor
    def extract_answer(text): ...                  # hashable answer or None
    AgentExecutor = group_reward_executor("tables/kl-aqp-gamma0.75-max_mse4plugin-loo-K8.json", extract_answer)

The table file and its siblings for smaller group sizes (same name, ``-K<k>``) form a family:
a group of k samples is scored with the k-table. A group of a size the family lacks
(``--n_samples_per_prompt``, or an evaluation's n) raises a ValueError that ends the rollout,
unless ``other_size_reward`` gives such samples a fixed reward; a sample whose generation
fails fails its whole group. The executor does not see OpenRLHF's ``--advantage_estimator``:
load the table whose baseline it needs (rloo: loo; dr_grpo: mean; group_norm divides by the
group std and is not unbiased with any table).
"""

from __future__ import annotations

import asyncio

from openrlhf.utils.agent import AgentExecutorBase, SingleTurnAgentExecutor

from .verl import as_family, verl_group_scores


class _Group:
    """The samples of one ``generate_responses`` call: joined before any is scored."""

    def __init__(self, prompt):
        self.prompt = prompt
        self.size = 0
        self.closed = False
        self.answers: dict[int, object] = {}
        self.done = asyncio.get_running_loop().create_future()

    def join(self) -> int:
        if self.closed:
            raise RuntimeError("coefgen: a sample joined its group after scoring had started; OpenRLHF no longer "
                               "starts the samples of a prompt together, so groups cannot be formed")
        self.size += 1
        return self.size - 1

    def fail(self, exc: BaseException):
        self.closed = True
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"coefgen: another sample of this prompt's group failed ({exc!r})"))


def group_reward_executor(table_or_path, extract_answer, invalid_reward: float | None = None,
                          other_size_reward: float | None = None) -> type:
    """An ``AgentExecutor`` class (subclass of OpenRLHF's ``AgentExecutorBase``) for ``--agent_func_path``."""
    family = as_family(table_or_path)
    table = family.table_for(family.K)

    class AgentExecutor(AgentExecutorBase):
        coefgen_table = table
        coefgen_family = family

        def __init__(self):
            self.single_turn = SingleTurnAgentExecutor()  # generation only: no --remote_rm_url
            self.groups: dict[int, _Group] = {}

        async def execute(self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine,
                          images=None):
            key = id(sampling_params)  # one object per generate_responses call, shared by its samples
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = _Group(prompt)
            elif group.prompt != prompt:
                raise RuntimeError("coefgen: two prompts share one sampling_params object; cannot group samples")
            slot = group.join()
            try:
                output = await self.single_turn.execute(prompt, label, sampling_params, max_length, hf_tokenizer,
                                                        llm_engine, images=images)
                start, end = output["action_ranges"][-1]
                text = hf_tokenizer.decode(output["observation_tokens"][start:end], skip_special_tokens=True)
                group.answers[slot] = extract_answer(text)
            except BaseException as exc:
                group.fail(exc)
                self.groups.pop(key, None)
                raise
            group.closed = True
            if len(group.answers) == group.size and not group.done.done():
                self.groups.pop(key, None)
                try:
                    answers = [group.answers[i] for i in range(group.size)]
                    rewards, counts = verl_group_scores(family, answers, [0] * group.size, invalid_reward,
                                                        other_size_reward)
                    group.done.set_result((rewards, counts))
                except ValueError as exc:
                    group.done.set_exception(ValueError(
                        f"coefgen: OpenRLHF generated {group.size} samples for this prompt (--n_samples_per_prompt, "
                        f"or the evaluation's n) but the table is for K = {table.K} (group sizes "
                        f"{', '.join(map(str, family.sizes))}): set --n_samples_per_prompt to one of them, or load "
                        f"the table built for K = {group.size}") if "samples in this batch" in str(exc) else exc)
            rewards, counts = await asyncio.shield(group.done)
            value = float(rewards[slot])
            output.update(reward=value, scores=value, extra_logs={"coefgen_count": int(counts[slot])})
            return output

    AgentExecutor.__qualname__ = AgentExecutor.__name__ = "AgentExecutor"
    return AgentExecutor


__all__ = ["group_reward_executor"]
