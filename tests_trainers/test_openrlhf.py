"""OpenRLHF 0.11.2: coefgen's group-level AgentExecutor loaded from an --agent_func_path file
and run the way RolloutRayActor.generate_responses runs an executor (n_samples_per_prompt
concurrent execute() calls sharing one sampling_params object, several prompts in flight);
generation itself goes through OpenRLHF's SingleTurnAgentExecutor with a stand-in for vLLM.
And the --remote_rm_url route: OpenRLHF's own SingleTurnAgentExecutor refuses at start-up."""

import asyncio
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
                    f"reward_func = openrlhf_reward_func({str(table_path(4))!r}, lambda s: s[-1:])\n")
    with pytest.raises(RuntimeError, match="once per sample.*--agent_func_path"):
        SingleTurnAgentExecutor(remote_rm_url=str(path))
