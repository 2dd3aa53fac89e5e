"""OpenRLHF 0.11.2's agent-executor route through OpenRLHF's own rollout actor code: the
--agent_func_path file loaded by openrlhf.trainer.ray.vllm_engine._load_agent_executor, and
RolloutRayActor's own __init__, generate() and generate_responses() (n concurrent execute()
calls for one prompt, several prompts in flight), with only vLLM itself stood in for (vllm is a
GPU package: a stub module gives AsyncLLMEngine, TokensPrompt, random_uuid). Rewards are checked
against t[c] read from the table file of the group's own size."""

import asyncio
import json
import random
import sys
import types
from types import SimpleNamespace

import pytest
from conftest import REPO, char_tokenizer

pytest.importorskip("openrlhf")
pytest.importorskip("ray")

STEM = "kl-aqp-gamma0.75-max_mse4plugin"
K = 4
AGENT_FILE = '''
from coefgen.integrations.openrlhf_agent import group_reward_executor

def extract_answer(text):
    text = text.strip()
    return text.split("=")[-1] if "=" in text else None

AgentExecutor = group_reward_executor({table!r}, extract_answer{extra})
'''


def values(k):
    payload = json.loads((REPO / "tables" / f"{STEM}-K{k}.json").read_text())
    assert payload["K"] == k
    return [float(v) for v in payload["values"]]


def expected(answers):
    """t_k[c_i] for one group by plain loops; k = the group's size; None matches nothing."""
    t = values(len(answers))
    return [t[(1 if a is None else answers.count(a)) - 1] for a in answers]


class StubEngine:
    """vLLM's AsyncLLMEngine as RolloutRayActor uses it: generate() is an async generator of
    RequestOutputs; the completion for a prompt is the next of its script, after a random delay."""

    scripts: dict = {}
    rng = random.Random(0)

    def __init__(self, args):
        self.args = args
        self.tokenizer = char_tokenizer()
        self.prompt_of = {tuple(self.tokenizer(text=p, add_special_tokens=False)["input_ids"]): p for p in self.scripts}

    @classmethod
    def from_engine_args(cls, args):
        return cls(args)

    async def is_sleeping(self):
        return False

    async def generate(self, prompt, sampling_params, request_id):
        await asyncio.sleep(self.rng.random() * 0.01)
        text = self.scripts[self.prompt_of[tuple(prompt["prompt_token_ids"])]].pop(0)
        if text is None:
            raise RuntimeError("engine error (test)")
        ids = self.tokenizer(text=text, add_special_tokens=False)["input_ids"]
        yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)])


@pytest.fixture
def vllm_engine_module(monkeypatch):
    """openrlhf.trainer.ray.vllm_engine imported against a stub vllm (restored afterwards)."""
    vllm = types.ModuleType("vllm")
    vllm.__version__ = "0.10.1"
    vllm.AsyncEngineArgs = lambda *args, **kwargs: SimpleNamespace(args=args, kwargs=kwargs)
    vllm.AsyncLLMEngine = StubEngine
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict
    utils = types.ModuleType("vllm.utils")
    utils.random_uuid = lambda: "req"
    vllm.inputs, vllm.utils = inputs, utils
    for name, module in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.utils", utils)):
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("openrlhf.trainer.ray", "openrlhf.trainer.ray.vllm_engine"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    # RolloutRayActor.__init__ writes these into os.environ; monkeypatch restores them
    monkeypatch.setenv("RAY_ADDRESS", "stub:0")
    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    import openrlhf.trainer.ray.vllm_engine as module

    yield module
    for name in ("openrlhf.trainer.ray", "openrlhf.trainer.ray.vllm_engine"):
        sys.modules.pop(name, None)


def agent_file(tmp_path, table, extra=""):
    path = tmp_path / "coefgen_agent.py"
    path.write_text(AGENT_FILE.format(table=str(table), extra=extra))
    return path


def rollout(module, agent_path, scripts, prompts, n, seed=0):
    """One RolloutRayActor (OpenRLHF's class, its own async __init__) and generate_responses for
    every prompt at once, as the trainer's ray calls run concurrently on the actor."""
    StubEngine.scripts = {p: list(s) for p, s in scripts.items()}
    StubEngine.rng = random.Random(seed)
    cls = module.RolloutRayActor.__ray_actor_class__
    tok = char_tokenizer()

    async def run():
        actor = cls.__new__(cls)
        await cls.__init__(actor, "stub-model", agent_func_path=str(agent_path), num_gpus=0)
        calls = [actor.generate_responses(prompt=p, label="lbl", sampling_params=SimpleNamespace(max_tokens=None,
                                                                                                logprobs=None),
                                          max_length=64, hf_tokenizer=tok, num_samples=n) for p in prompts]
        return actor, await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(run())


def answers_of(outputs):
    tok = char_tokenizer()
    texts = [tok.decode(o["observation_tokens"][o["action_ranges"][-1][0]:], skip_special_tokens=True)
             for o in outputs]
    return [t.split("=")[-1] if "=" in t else None for t in texts]


def test_group_rewards_through_the_rollout_actor(tmp_path, vllm_engine_module):
    path = agent_file(tmp_path, REPO / "tables" / f"{STEM}-K{K}.json")
    rng = random.Random(3)
    prompts = ["1+1=?", "2+2=?", "3+3=?", "1+1=?"]  # a duplicate prompt in flight: its own group
    scripts = {}
    for p in prompts:
        scripts.setdefault(p, []).extend(f"x={rng.choice('0123')}" if rng.random() < 0.85 else "xx" for _ in range(K))
    actor, results = rollout(vllm_engine_module, path, scripts, prompts, K)
    assert type(actor.executor).__name__ == "AgentExecutor" and actor.executor.groups == {}
    for g, outputs in enumerate(results):
        assert len(outputs) == K and all(o["prompt"] == prompts[g] for o in outputs)
        answers = answers_of(outputs)
        assert [o["reward"] for o in outputs] == expected(answers)
        assert [o["scores"] for o in outputs] == [o["reward"] for o in outputs]
        assert [o["extra_logs"]["coefgen_count"] for o in outputs] == [
            1 if a is None else answers.count(a) for a in answers]


def test_other_group_sizes(tmp_path, vllm_engine_module):
    """n = 3 with the K = 4 file: scored with the 3-sample table beside it; n = 5: refused with the
    sizes named; other_size_reward gives such groups a fixed reward."""
    path = agent_file(tmp_path, REPO / "tables" / f"{STEM}-K{K}.json")
    _, (outputs,) = rollout(vllm_engine_module, path, {"1+1=?": ["x=1", "x=2", "x=1"]}, ["1+1=?"], 3)
    assert [o["reward"] for o in outputs] == expected(answers_of(outputs))
    _, (error,) = rollout(vllm_engine_module, path, {"1+1=?": ["x=1"] * 5}, ["1+1=?"], 5)
    assert isinstance(error, ValueError) and "generated 5 samples" in str(error) and "sizes 2, 3, 4" in str(error)
    path = agent_file(tmp_path, REPO / "tables" / f"{STEM}-K{K}.json", extra=", other_size_reward=0.5")
    _, (outputs,) = rollout(vllm_engine_module, path, {"1+1=?": ["x=1"] * 5}, ["1+1=?"], 5)
    assert [o["reward"] for o in outputs] == [0.5] * 5


def test_a_failed_generation_fails_its_group_only(tmp_path, vllm_engine_module):
    path = agent_file(tmp_path, REPO / "tables" / f"{STEM}-K{K}.json")
    scripts = {"1+1=?": ["x=1", None, "x=1", "x=2"], "2+2=?": ["x=4", "x=4", "x=4", "x=3"]}
    actor, (failed, fine) = rollout(vllm_engine_module, path, scripts, ["1+1=?", "2+2=?"], K)
    assert isinstance(failed, RuntimeError)
    assert [o["reward"] for o in fine] == expected(answers_of(fine))
    assert actor.executor.groups == {}
