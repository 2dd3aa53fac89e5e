"""OpenRLHF 0.11.2: coefgen's group-level AgentExecutor loaded from an --agent_func_path file
and run the way RolloutRayActor.generate_responses runs an executor (n_samples_per_prompt
concurrent execute() calls sharing one sampling_params object, several prompts in flight);
generation itself goes through OpenRLHF's SingleTurnAgentExecutor with a stand-in for vLLM.
And the --remote_rm_url route: OpenRLHF's own SingleTurnAgentExecutor refuses at start-up."""

import asyncio
from pathlib import Path
import importlib.util
import random
from types import SimpleNamespace

import pytest
from conftest import char_tokenizer, expected_rewards, table_path

pytest.importorskip("openrlhf")
from openrlhf.utils.agent import AgentExecutorBase, SingleTurnAgentExecutor  # noqa: E402

AGENT_FILE = '''
from coefgen.integrations.openrlhf_agent import group_reward_executor

def extract_answer(text):
    text = text.strip()
    return text.split("=")[-1] if "=" in text else None

AgentExecutor = group_reward_executor({table!r}, extract_answer{extra})
'''


def load_agent_executor(path):
    """What openrlhf.trainer.ray.vllm_engine._load_agent_executor does (that module imports vllm)."""
    spec = importlib.util.spec_from_file_location("agent_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.AgentExecutor, AgentExecutorBase)
    return module.AgentExecutor()


class FakeEngine:
    """Stands in for vLLM: returns the next scripted completion for a prompt, after a random delay."""

    def __init__(self, tokenizer, scripts, seed=0):
        self.tokenizer, self.scripts, self.rng = tokenizer, {k: list(v) for k, v in scripts.items()}, random.Random(seed)
        self.prompt_of = {tuple(tokenizer(text=p, add_special_tokens=False)["input_ids"]): p for p in scripts}

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        await asyncio.sleep(self.rng.random() * 0.01)
        text = self.scripts[self.prompt_of[tuple(prompt_token_ids)]].pop(0)
        ids = self.tokenizer(text=text, add_special_tokens=False)["input_ids"]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)])


async def generate_responses(executor, engine, tokenizer, prompt, label, n):
    """RolloutRayActor.generate_responses: n execute() calls for one prompt, gathered."""
    sampling_params = SimpleNamespace(max_tokens=None, logprobs=None)  # one object per ray call
    tasks = [executor.execute(prompt=prompt, label=label, sampling_params=sampling_params, max_length=64,
                              hf_tokenizer=tokenizer, llm_engine=engine, images=None) for _ in range(n)]
    return await asyncio.gather(*tasks)


def agent_file(tmp_path, K, extra=""):
    path = tmp_path / "coefgen_agent.py"
    path.write_text(AGENT_FILE.format(table=str(table_path(K)), extra=extra))
    return path


def run_prompts(executor, tokenizer, scripts, prompts, n, seed=0):
    engine = FakeEngine(tokenizer, scripts, seed)

    async def run():  # several prompts in flight at once, as in one rollout actor
        return await asyncio.gather(*[generate_responses(executor, engine, tokenizer, p, "lbl", n) for p in prompts])

    return asyncio.run(run())


def test_group_rewards_through_the_agent_executor(tmp_path):
    K = 4
    tok = char_tokenizer()
    executor = load_agent_executor(agent_file(tmp_path, K))
    rng = random.Random(3)
    prompts = ["1+1=?", "2+2=?", "3+3=?", "1+1=?"]  # a duplicate prompt in flight: its own group
    scripts = {}
    for p in prompts:
        scripts.setdefault(p, []).extend(f"x={rng.choice('0123')}" if rng.random() < 0.9 else "xx" for _ in range(K))
    results = run_prompts(executor, tok, scripts, prompts, K)
    assert executor.groups == {}
    for g, outputs in enumerate(results):
        assert len(outputs) == K
        texts = [tok.decode(o["observation_tokens"][o["action_ranges"][0][0]:], skip_special_tokens=True)
                 for o in outputs]
        answers = [t.split("=")[-1] if "=" in t else None for t in texts]
        expected = expected_rewards(answers, [g] * K, K)
        assert [o["reward"] for o in outputs] == pytest.approx(expected, rel=0, abs=0)
        assert [o["scores"] for o in outputs] == [o["reward"] for o in outputs]
        counts = [1 if a is None else answers.count(a) for a in answers]
        assert [o["extra_logs"]["coefgen_count"] for o in outputs] == counts
        assert all(o["prompt"] == prompts[g] for o in outputs)


def test_group_size_other_than_K_ends_the_rollout(tmp_path):
    tok = char_tokenizer()
    executor = load_agent_executor(agent_file(tmp_path, 4))
    with pytest.raises(ValueError, match=r"generated 2 samples for this prompt .*table is for K = 4"):
        run_prompts(executor, tok, {"1+1=?": ["x=1", "x=2"]}, ["1+1=?"], 2)
    # an evaluation with n = 1 and other_size_reward: a fixed, documented reward
    executor = load_agent_executor(agent_file(tmp_path, 4, extra=", other_size_reward=0.0"))
    (outputs,) = run_prompts(executor, tok, {"1+1=?": ["x=1"]}, ["1+1=?"], 1)
    assert outputs[0]["reward"] == 0.0 and outputs[0]["extra_logs"]["coefgen_count"] == 0


def test_remote_rm_url_file_is_refused_at_startup(tmp_path):
    """OpenRLHF's own loader of --remote_rm_url files gets coefgen's clear error at construction."""
    path = tmp_path / "reward.py"
    path.write_text("from coefgen.integrations import openrlhf_reward_func\n"
                    f"reward_func = openrlhf_reward_func({str(table_path(4))!r}, lambda s: s[-1:], "
                    "advantage_estimator='reinforce', objective='consensus')\n")
    with pytest.raises(RuntimeError, match="once per sample.*--agent_func_path"):
        SingleTurnAgentExecutor(remote_rm_url=str(path))


# --- the advantage step: OpenRLHF's own code against coefgen's estimator → baseline mapping ----------

OPENRLHF = Path(importlib.util.find_spec("openrlhf").origin).parent


def openrlhf_function(relpath, name, globals_):
    """A function of OpenRLHF's installed source, compiled on its own (its module imports
    deepspeed/flash-attn/vllm, which a CPU test machine does not have)."""
    import ast
    import textwrap

    src = (OPENRLHF / relpath).read_text()
    node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == name)
    code = textwrap.dedent(ast.get_source_segment(src, node))
    exec(compile(code, str(OPENRLHF / relpath), "exec"), globals_)
    return globals_[name]


def openrlhf_advantages(estimator, rewards, n):
    """Sequence-level advantages OpenRLHF 0.11.2's ExperienceMaker.compute_advantages_and_returns
    gives rewards (one experience per group, responses of 3 tokens, no KL, no length penalty)."""
    import itertools
    import logging
    import typing

    import torch

    g = {"torch": torch, "itertools": itertools, "logger": logging.getLogger("openrlhf-test"),
         "apply_length_penalties": lambda experiences, args: None, "List": typing.List, "Tuple": typing.Tuple,
         "Optional": typing.Optional, "Union": typing.Union, "Experience": object}
    compute_reward = openrlhf_function("models/utils.py", "compute_reward", dict(g))
    cumulative = openrlhf_function("trainer/ppo_utils/experience_maker.py", "get_cumulative_returns", dict(g))
    g["compute_reward"] = compute_reward
    step = openrlhf_function("trainer/ppo_utils/experience_maker.py", "compute_advantages_and_returns", dict(g))
    args = SimpleNamespace(rollout=SimpleNamespace(n_samples_per_prompt=n),
                           algo=SimpleNamespace(advantage=SimpleNamespace(estimator=estimator, gamma=1.0, lambd=1.0,
                                                                          no_std_norm=False)),
                           reward=SimpleNamespace(clip_range=None))
    maker = SimpleNamespace(strategy=SimpleNamespace(args=args), advantage_estimator=estimator,
                            kl_ctl=SimpleNamespace(value=0.0))
    maker.get_cumulative_returns = lambda r, m, gamma: cumulative(maker, r, m, gamma)
    rewards = torch.as_tensor(rewards, dtype=torch.float64).reshape(-1, n)
    experiences = []
    for p in range(rewards.shape[0]):
        experiences.append(SimpleNamespace(index=list(range(p * n, (p + 1) * n)), rewards=rewards[p].clone(),
                                           action_mask=torch.ones(n, 3, dtype=torch.float64),
                                           kl=torch.zeros(n, 3, dtype=torch.float64), info={}))
    step.__wrapped__(maker, experiences) if hasattr(step, "__wrapped__") else step(maker, experiences)
    return torch.cat([e.advantages[:, 0] for e in experiences]).double().numpy()


@pytest.mark.parametrize("estimator", ["rloo", "dr_grpo", "group_norm", "reinforce_baseline", "reinforce"])
def test_advantage_estimators_do_what_coefgen_maps_them_to(estimator):
    """For each --algo.advantage.estimator, OpenRLHF's advantage is a positive batch scalar times
    the baseline coefgen maps it to (none/loo/mean, divided by the group std where flagged),
    up to a batch constant for plain reinforce (its whitening subtracts the batch mean)."""
    import numpy as np

    from coefgen.integrations.openrlhf import ESTIMATORS

    n = 4
    rng = np.random.default_rng(5)
    r = rng.normal(size=(3, n))
    baseline, std = ESTIMATORS[estimator]
    if baseline == "loo":
        x = r - (r.sum(1, keepdims=True) - r) / (n - 1)
    elif baseline == "mean":
        x = r - r.mean(1, keepdims=True)
    else:
        x = r.copy()
    if std:
        x = x / (r.std(1, ddof=1, keepdims=True) + 1e-9)
    x = x.reshape(-1)
    adv = openrlhf_advantages(estimator, r.reshape(-1), n)
    if estimator == "reinforce":
        x, adv = x - x.mean(), adv - adv.mean()
    s = adv @ x / (x @ x)
    # float64 throughout, except OpenRLHF's batch whitening, which computes in float32
    assert s > 0 and np.allclose(adv, s * x, rtol=1e-6, atol=1e-6)
    if estimator in ("rloo", "dr_grpo", "group_norm"):
        assert s == pytest.approx(1.0, rel=1e-12)  # no batch whitening for these


def test_remote_rm_url_batches_of_16_queries_with_8_prompts_are_refused():
    """OpenRLHF's own _fetch_rewards_via_func with 16 queries and 8 prompts (a misuse): every call
    coefgen's function gets is refused, never answered with fewer rewards than queries."""
    from coefgen.integrations import openrlhf_reward_func

    f = openrlhf_reward_func(str(table_path(4)), lambda s: s[-1:], advantage_estimator="reinforce",
                             objective="consensus")
    executor = SingleTurnAgentExecutor(remote_rm_url=None)
    executor.reward_func = f
    queries = [f"q{i // 4}=x{i % 3}" for i in range(16)]
    prompts = [f"q{i}=" for i in range(8)]
    with pytest.raises(ValueError, match="queries but|do not split into groups"):
        asyncio.run(executor._fetch_rewards_via_func(queries, prompts, ["l"] * 16))
    # called directly with the whole batch: refused, naming both lengths
    with pytest.raises(ValueError, match="16 queries but 8 prompts"):
        f(queries, prompts, ["l"] * 16)
