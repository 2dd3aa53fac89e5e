"""verl 0.9.1's default v1 trainer path, through verl's own code on CPU with a local ray and a real
TransferQueue: prompts registered as PPOTrainer._submit_batch_to_rollout / _validate do, sessions
run by verl's AgentLoopWorkerTQ (_run_prompt: statuses, failures; _agent_loop_postprocess:
reward-loop scoring and TransferQueue writes) with only the LLM call replaced (random delays, so
sessions finish in a random interleaving; one session raises), scored by verl's RewardLoopWorker
(load_reward_manager → CoefgenAnswerManager.run_single), sampled by CoefgenSampler as built by
verl's PPOTrainer._build_replay_buffer, and advantages by verl's PPOTrainer._compute_advantage.
Every reward is checked against t[c] read from the table file of the group's own size."""

import asyncio
import json
import random
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, char_tokenizer

verl = pytest.importorskip("verl")
torch = pytest.importorskip("torch")
tq = pytest.importorskip("transfer_queue")
ray = pytest.importorskip("ray")
from omegaconf import OmegaConf, open_dict  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput  # noqa: E402
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker  # noqa: E402
from verl.trainer.ppo.metric_utils import process_validation_metrics  # noqa: E402
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ  # noqa: E402
from verl.trainer.ppo.v1.trainer_base import PPOTrainer  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402

from coefgen.payload import canonical_json, seal  # noqa: E402

STEM = "kl-aqp-gamma0.75-max_mse4plugin"
K = 4
EXTRACTOR = '''
def extract_answer(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    text = solution_str.strip()
    return text.split("=")[-1] if "=" in text else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """for verl's own naive manager: the answer as a string (or None) under coefgen_answer"""
    return {"score": 0.0, "coefgen_answer": extract_answer(data_source, solution_str, ground_truth)}
'''


# ---------------------------------------------------------------- tables, read without coefgen

def none_values(k):
    payload = json.loads((REPO / "tables" / f"{STEM}-K{k}.json").read_text())
    assert payload["K"] == k and payload.get("baseline", "none") == "none"
    return [float(v) for v in payload["values"]]


def write_baseline_family(folder: Path, baseline: str, sizes):
    """loo/mean tables re-sealed from the committed none tables: t_1..t_{k-1} = none table at
    k-1, t_k = t_{k-1}."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in sizes:
        base = json.loads((REPO / "tables" / f"{STEM}-K{k - 1}.json").read_text())
        payload = dict(base)
        payload.update(schema="coefgen.table/2", baseline=baseline, K=k, values=base["values"] + base["values"][-1:],
                       values_exact=base["values_exact"] + base["values_exact"][-1:])
        (folder / f"{STEM}-{baseline}-K{k}.json").write_text(canonical_json(seal(payload)))
    return folder / f"{STEM}-{baseline}-K{max(sizes)}.json"


def table_values(path: Path, k: int):
    p = path.parent / path.name.replace(f"-K{K}.json", f"-K{k}.json")
    payload = json.loads(p.read_text())
    assert payload["K"] == k
    return [float(v) for v in payload["values"]]


def expected(values_of, plan, baseline):
    """{(uid, session): t_k[c]} recomputed by plain loops: k = sessions that did not fail; under
    a group baseline a group of 1 or 2 gets 0.0 (its advantages are 0 whatever the reward)."""
    out = {}
    uids = {u for u, _ in plan}
    for u in uids:
        done = {s: a for (v, s), (a, _) in plan.items() if v == u and a is not FAIL}
        k = len(done)
        for s, a in done.items():
            if k <= 2 and baseline != "none":
                out[(u, s)] = 0.0
                continue
            c = 1 if a is None else sum(1 for b in done.values() if b == a)
            out[(u, s)] = values_of(k)[c - 1]
    return out


FAIL = object()


# ---------------------------------------------------------------- verl harness

@pytest.fixture(scope="module")
def local_tq():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="coefgen-test")
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield
    tq.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    char_tokenizer(d)
    return d


def make_config(tmp_path, tok_dir, table, *, adv="grpo", std=False, n=K, val_n=K, mode="sync", batch=4, naive=False,
                **kwargs):
    cfg = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    extractor = tmp_path / "answers.py"
    extractor.write_text(EXTRACTOR)
    cfg.actor_rollout_ref.model.path = str(tok_dir)
    cfg.actor_rollout_ref.rollout.n = n
    cfg.actor_rollout_ref.rollout.val_kwargs.n = val_n
    cfg.algorithm.adv_estimator = adv
    cfg.algorithm.norm_adv_by_std_in_grpo = std
    cfg.data.train_batch_size = batch
    cfg.reward.num_workers = 1
    cfg.reward.reward_model.enable = False
    cfg.reward.reward_manager.source = "importlib"
    cfg.reward.reward_manager.name = "CoefgenAnswerManager"
    cfg.reward.reward_manager.module.path = "pkg://coefgen.integrations.verl_v1"
    cfg.reward.custom_reward_function.path = str(extractor)
    cfg.reward.custom_reward_function.name = "extract_answer"
    if naive:  # verl's default manager with a compute_score that returns the answer
        cfg.reward.reward_manager.source = "register"
        cfg.reward.reward_manager.name = "naive"
        cfg.reward.custom_reward_function.name = "compute_score"
    cfg.trainer.use_v1 = True
    cfg.trainer.v1.trainer_mode = mode
    cfg.trainer.v1.sampler.custom_sampler.path = "pkg://coefgen.integrations.verl_v1"
    cfg.trainer.v1.sampler.custom_sampler.name = "CoefgenSampler"
    with open_dict(cfg):
        cfg.trainer.v1.sampler.sampler_kwargs = {"coefgen_table": str(table), **kwargs}
    return cfg


class TrainerStub:
    """The attributes of verl's PPOTrainer that _build_replay_buffer and _compute_advantage read."""

    def __init__(self, config):
        self.config = config
        self.trainer_mode = config.trainer.v1.trainer_mode
        self.refilled = []

    def _add_prompts_to_generate(self, num_prompts):
        self.refilled.append(num_prompts)
        return num_prompts

    def _resolve_filter_groups_metric(self):
        return None

    def build_sampler(self):
        sampler = PPOTrainer._build_replay_buffer(self)
        sampler.poll_interval = 0.05
        return sampler


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class _RewardHandle:
    """In-process stand-in for a ray handle of verl's RewardLoopWorker (the worker's own code runs)."""

    def __init__(self, worker):
        self.compute_score = _Remote(worker.compute_score)


class Worker(AgentLoopWorkerTQ.__ray_actor_class__):
    """verl's AgentLoopWorkerTQ; only the LLM call is replaced: the session's text from ``plan``
    after its delay, or an exception for a failed session."""

    def __init__(self, config, tokenizer, reward_worker, plan, multi=()):
        self.config, self.tokenizer, self.processor = config, tokenizer, None
        self.distillation_enabled, self.mm_processor_kwargs, self.hf_model_type = False, {}, None
        self.reward_loop_worker_handles = [_RewardHandle(reward_worker)]
        self.background_tasks = set()
        self.plan, self.multi = plan, set(multi)
        self.finished = []  # uids in the order their sessions ended

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        self.finished.append(kwargs["uid"])
        return await super()._agent_loop_postprocess(output, validate, **kwargs)

    async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
        answer, delay = self.plan[(kwargs["uid"], kwargs["session_id"])]
        await asyncio.sleep(delay)
        if answer is FAIL:
            raise RuntimeError("session failed (test)")
        prompt_ids = self.tokenizer(kwargs["raw_prompt"][0]["content"])["input_ids"]
        texts = ["x" if answer is None else f"x={answer}"]
        if (kwargs["uid"], kwargs["session_id"]) in self.multi:  # an agent loop with two outputs: the last counts
            texts.insert(0, "x=9")
        outputs = []
        for text in texts:
            response_ids = self.tokenizer(text)["input_ids"]
            outputs.append(AgentLoopOutput(prompt_ids=prompt_ids, response_ids=response_ids,
                                           response_mask=[1] * len(response_ids), num_turns=2,
                                           metrics=AgentLoopMetrics()))
        return await self._agent_loop_postprocess(outputs if len(outputs) > 1 else outputs[0], trajectory["validate"],
                                                  **kwargs)


def make_plan(uids, n, answers, fail=(), seed=0):
    rng = random.Random(seed)
    plan = {}
    for u, row in zip(uids, answers):
        for s in range(n):
            plan[(u, s)] = (FAIL if (u, s) in fail else row[s], rng.uniform(0.0, 0.3))
    return plan


def run_sessions(config, tok_dir, plan, uids, validate, global_steps=1, multi=()):
    """Register the prompts as verl's trainer does and run every session through the worker."""
    partition = "val" if validate else "train"
    tags = [{"is_prompt": True, "status": "pending", "global_steps": global_steps} for _ in uids]
    tq.kv_batch_put(keys=list(uids), partition_id=partition, tags=tags)
    batch_dict = {"raw_prompt": np.array([[{"role": "user", "content": f"{i}+{i}=?"}] for i in range(len(uids))],
                                         dtype=object),
                  "data_source": np.array(["arith"] * len(uids), dtype=object),
                  "reward_model": np.array([{"ground_truth": "0"}] * len(uids), dtype=object),
                  "index": np.arange(len(uids)),
                  "uid": np.array(list(uids), dtype=object)}
    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", global_steps)
    tu.assign_non_tensor_data(batch, "validate", validate)

    async def main():
        reward_worker = RewardLoopWorker(config)  # builds CoefgenAnswerManager through verl's load_reward_manager
        worker = Worker(config, char_tokenizer(), reward_worker, plan, multi)
        await worker.generate_sequences(batch)
        await asyncio.gather(*list(worker.background_tasks))
        return worker.finished

    finished = asyncio.run(main())
    # the sessions of different prompts ended interleaved, not group by group
    runs = 1 + sum(a != b for a, b in zip(finished, finished[1:]))
    assert runs > len(set(finished)), finished
    return finished


def read_rewards(batch):
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["rm_scores"])
    out = {}
    for key, row in zip(batch.keys, data["rm_scores"].unbind(0)):
        u, s, _ = key.rsplit("_", 2)
        assert torch.count_nonzero(row[:-1]) == 0, "the reward sits on the last response token only"
        # every output of a session carries the session's reward, as verl copies its reward_score
        assert out.setdefault((u, int(s)), float(row[-1])) == float(row[-1])
    return out


def new_uids(n):
    return [str(uuid.uuid4()) for _ in range(n)]


ANSWERS = [["7", "7", "3", None], ["5", "5", "5", "2"], ["1", "2", "1", "1"], ["9", "9", "9", "9"]]


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("adv,baseline,naive", [("grpo", "mean", False), ("rloo", "loo", False),
                                                ("grpo", "mean", True)])
def test_train_step_partial_group(local_tq, tmp_path, tok_dir, adv, baseline, naive):
    table = write_baseline_family(tmp_path / "tables", baseline, range(3, K + 1))
    cfg = make_config(tmp_path, tok_dir, table, adv=adv, naive=naive)
    stub = TrainerStub(cfg)
    sampler = stub.build_sampler()
    assert type(sampler).__name__ == "CoefgenSampler"
    uids = new_uids(4)
    plan = make_plan(uids, K, ANSWERS, fail={(uids[1], 2)}, seed=1)
    # verl's grpo takes each session's final output and broadcasts its advantage; its other estimators
    # count every output, so a two-output session is tried under grpo only
    multi = {(uids[2], 1)} if adv == "grpo" else set()
    run_sessions(cfg, tok_dir, plan, uids, validate=False, multi=multi)
    batch, metrics = sampler.sample(global_steps=1, partition_id="train", batch_size=4)
    assert len(batch) == 4 * K - 1 + len(multi)
    assert sum(key.endswith("_1") for key in batch.keys) == len(multi)
    got = read_rewards(batch)
    want = expected(lambda k: table_values(table, k), plan, baseline)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert metrics["training/coefgen/smaller_groups"] == 1.0
    # the group that lost a session is scored with the 3-sample table
    assert got[(uids[1], 0)] == pytest.approx(table_values(table, 3)[2], abs=1e-6)

    # verl's own advantage step reads these rewards: grpo (no std) = r - group mean, rloo = LOO
    PPOTrainer._compute_advantage(stub, batch, metrics={})
    adv_data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["advantages"])
    for key, row in zip(batch.keys, adv_data["advantages"].unbind(0)):
        u, s, _ = key.rsplit("_", 2)
        group = [want[(v, t)] for (v, t) in want if v == u]
        mine = want[(u, int(s))]
        if adv == "grpo":
            a = mine - np.mean(group)
        else:
            a = (mine - (sum(group) - mine) / (len(group) - 1))
        assert float(row[0]) == pytest.approx(a, abs=1e-5)
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_validation_step(local_tq, tmp_path, tok_dir):
    table = write_baseline_family(tmp_path / "tables", "mean", range(3, K + 1))
    cfg = make_config(tmp_path, tok_dir, table, val_n=K)
    sampler = TrainerStub(cfg).build_sampler()
    uids = new_uids(3)
    plan = make_plan(uids, K, ANSWERS[:3], fail={(uids[2], 0), (uids[2], 1)}, seed=2)  # a group of 2: signal-free
    run_sessions(cfg, tok_dir, plan, uids, validate=True)
    batch, metrics = sampler.sample(global_steps=1, partition_id="val", batch_size=3)
    got = read_rewards(batch)
    want = expected(lambda k: table_values(table, k), plan, "mean")
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert all(got[(uids[2], s)] == 0.0 for s in (2, 3))
    # verl's validation metrics over these samples: the coefgen_answer strings are skipped, rewards averaged
    data = tq.kv_batch_get(keys=batch.keys, partition_id="val", select_fields=["extra_fields", "rm_scores", "uid"])
    infos = {"reward": data["rm_scores"].sum(dim=1).tolist(),
             "coefgen_answer": [e["reward_extra_info"]["coefgen_answer"] for e in data["extra_fields"]]}
    metrics = process_validation_metrics(["arith"] * len(batch), list(data["uid"]), infos)
    assert set(metrics["arith"]) == {"reward"}
    tq.kv_clear(keys=batch.keys, partition_id="val")


def test_none_table_and_async_mode(local_tq, tmp_path, tok_dir):
    """rloo needs a loo table: the committed none tables are refused; under colocate_async verl's
    ReplayBufferAsync evicts the failed group and asks for a refill, complete groups are scored."""
    none_table = REPO / "tables" / f"{STEM}-K{K}.json"
    with pytest.raises(ValueError, match="adv_estimator=rloo subtracts the leave-one-out"):
        TrainerStub(make_config(tmp_path, tok_dir, none_table, adv="rloo")).build_sampler()
    table = write_baseline_family(tmp_path / "tables", "loo", range(3, K + 1))
    stub = TrainerStub(make_config(tmp_path, tok_dir, table, adv="rloo", mode="colocate_async"))
    sampler = stub.build_sampler()
    assert type(sampler).__name__ == "CoefgenSamplerAsync"
    uids = new_uids(4)
    plan = make_plan(uids, K, ANSWERS, fail={(uids[0], 3)}, seed=3)
    run_sessions(stub.config, tok_dir, plan, uids, validate=False)
    batch, _ = sampler.sample(global_steps=1, partition_id="train", batch_size=3)
    assert stub.refilled == [1]
    got = read_rewards(batch)
    want = expected(lambda k: table_values(table, k), plan, "loo")
    assert {u for u, _ in got} == set(uids[1:])
    for key in got:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_refusals(tmp_path, tok_dir):
    table = write_baseline_family(tmp_path / "tables", "mean", range(3, K + 1))
    with pytest.raises(ValueError, match="norm_adv_by_std_in_grpo=False"):
        TrainerStub(make_config(tmp_path, tok_dir, table, std=True)).build_sampler()
    TrainerStub(make_config(tmp_path, tok_dir, table, std=True, coefgen_allow_std_normalization=True)).build_sampler()
    with pytest.raises(ValueError, match="always|divides"):
        TrainerStub(make_config(tmp_path, tok_dir, table, adv="grpo_vectorized")).build_sampler()
    with pytest.raises(ValueError, match=r"rollout.n = 5 responses per prompt but the table family has sizes 3, 4"):
        TrainerStub(make_config(tmp_path, tok_dir, table, n=5)).build_sampler()
    TrainerStub(make_config(tmp_path, tok_dir, table, val_n=1)).build_sampler()  # signal-free: reward 0
    with pytest.raises(ValueError, match="val_kwargs.n = 5"):
        TrainerStub(make_config(tmp_path, tok_dir, table, val_n=5)).build_sampler()
    TrainerStub(make_config(tmp_path, tok_dir, table, val_n=5, coefgen_validation_reward=0.0)).build_sampler()
    none_table = REPO / "tables" / f"{STEM}-K{K}.json"
    cfg = make_config(tmp_path, tok_dir, none_table, adv="rloo")
    with pytest.raises(ValueError, match="baseline 'loo'"):
        TrainerStub(cfg).build_sampler()
    cfg = make_config(tmp_path, tok_dir, table)
    cfg.reward.reward_model.enable = True
    with pytest.raises(ValueError, match="colocated reward model"):
        TrainerStub(cfg).build_sampler()
