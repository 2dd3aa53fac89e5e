"""verl 0.9.1: CoefgenRewardManager built by verl's own load_reward_manager from an OmegaConf
config (verl's generated ppo_trainer.yaml), scored through verl's RewardLoopWorker
(compute_score_batch → run_single) and assembled by the class's assemble_rm_scores, on a real
DataProto whose uids come from DataProto.repeat(interleave=True) followed by a random reorder."""

import asyncio
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, char_tokenizer

verl = pytest.importorskip("verl")
torch = pytest.importorskip("torch")
from omegaconf import OmegaConf, open_dict  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.reward_loop.reward_loop import RewardLoopManager, RewardLoopWorker  # noqa: E402
from verl.trainer.ppo.reward import load_reward_manager, resolve_reward_manager_cls  # noqa: E402

EXTRACTOR = '''
def extract_answer(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    text = solution_str.strip()
    return text.split("=")[-1] if "=" in text else None
'''


@pytest.fixture
def tok_dir(tmp_path):
    d = tmp_path / "tok"
    char_tokenizer(d)
    return d


STEM = "kl-aqp-gamma0.75-max_mse4plugin"


def table_path(k: int) -> Path:
    """The committed no-baseline kl aqp table for group size k."""
    return REPO / "tables" / f"{STEM}-K{k}.json"


def loo_family(folder: Path, K: int) -> Path:
    """loo tables for sizes 3..K re-sealed from the committed none tables (t_1..t_{k-1} = the none
    table at k-1, t_k = t_{k-1}); verl's rloo needs baseline loo."""
    from coefgen.payload import canonical_json, seal

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(3, K + 1):
        base = json.loads(table_path(k - 1).read_text())
        payload = dict(base, schema="coefgen.table/2", baseline="loo", K=k, values=base["values"] + base["values"][-1:],
                       values_exact=base["values_exact"] + base["values_exact"][-1:])
        (folder / f"{STEM}-loo-K{k}.json").write_text(canonical_json(seal(payload)))
    return folder / f"{STEM}-loo-K{K}.json"


def expected_rewards(answers, group_ids, K=None):
    """t_k[c_i] by plain loops from the loo files' values as the none tables state them: k = the
    group's size, t_k = (none table at k-1) + its last value; groups of 1 or 2 get 0.0."""
    out = []
    for a, g in zip(answers, group_ids):
        members = [j for j, h in enumerate(group_ids) if h == g]
        k = len(members)
        if k <= 2:
            out.append(0.0)
            continue
        t = [float(v) for v in json.loads(table_path(k - 1).read_text())["values"]]
        t.append(t[-1])
        c = 1 if a is None else sum(1 for j in members if answers[j] == a)
        out.append(t[c - 1])
    return out


def make_config(tmp_path, tok_dir, K, *, reward_model=True, use_v1=False, val_n=None, validation_reward=None, n=None,
                adv="rloo"):
    cfg = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    extractor = tmp_path / "answers.py"
    extractor.write_text(EXTRACTOR)
    cfg.actor_rollout_ref.model.path = str(tok_dir)
    cfg.actor_rollout_ref.rollout.n = K if n is None else n
    cfg.actor_rollout_ref.rollout.val_kwargs.n = K if val_n is None else val_n
    cfg.reward.num_workers = 1
    cfg.reward.reward_manager.source = "importlib"
    cfg.reward.reward_manager.name = "CoefgenRewardManager"
    cfg.reward.reward_manager.module.path = "pkg://coefgen.integrations.verl_reward_loop"
    cfg.reward.custom_reward_function.path = str(extractor)
    cfg.reward.custom_reward_function.name = "extract_answer"
    cfg.trainer.use_v1 = use_v1
    cfg.algorithm.adv_estimator = adv
    cfg.reward.reward_model.enable = reward_model
    cfg.reward.reward_model.model_path = str(tok_dir)
    with open_dict(cfg):
        cfg.reward.reward_kwargs = {"coefgen_table": str(loo_family(tmp_path / "tables", K))}
        if validation_reward is not None:
            cfg.reward.reward_kwargs.coefgen_validation_reward = validation_reward
    return cfg


def make_batch(tokenizer, K, answers_per_prompt, seed=0, validate=False):
    """A DataProto like verl's after rollout: prompts repeated K times (interleave=True), each
    with its uid, then responses, then a random reorder (as batch balancing does)."""
    n_prompts = len(answers_per_prompt)
    P, R = 6, 8
    prompt_ids = torch.full((n_prompts, P), tokenizer.pad_token_id, dtype=torch.long)
    for i in range(n_prompts):
        ids = tokenizer(f"{i}+{i}=?")["input_ids"]
        prompt_ids[i, P - len(ids):] = torch.tensor(ids)  # left-padded prompts, as verl's
    prompts = DataProto.from_dict(
        tensors={"prompts": prompt_ids},
        non_tensors={"uid": np.array([str(uuid.UUID(int=i)) for i in range(n_prompts)], dtype=object),
                     "data_source": np.array(["arith"] * n_prompts, dtype=object),
                     "reward_model": np.array([{"ground_truth": "0"}] * n_prompts, dtype=object)})
    batch = prompts.repeat(repeat_times=K, interleave=True)
    texts = [f"x={a}" if a is not None else "xx" for row in answers_per_prompt for a in row]
    responses = torch.full((len(texts), R), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(texts), P + R), dtype=torch.long)
    attention[:, :P] = (batch.batch["prompts"] != tokenizer.pad_token_id).long()
    for j, t in enumerate(texts):
        ids = tokenizer(t)["input_ids"]
        responses[j, :len(ids)] = torch.tensor(ids)
        attention[j, P:P + len(ids)] = 1
    batch = batch.union(DataProto.from_dict(tensors={"responses": responses, "attention_mask": attention,
                                                     "input_ids": torch.cat([batch.batch["prompts"], responses], 1)}))
    batch.non_tensor_batch["text"] = np.array(texts, dtype=object)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(batch)))
    batch.reorder(perm)
    batch.meta_info["validate"] = validate
    return batch


def score_through_verl(cfg, batch):
    """RewardLoopWorker.compute_score_batch (what each ray reward worker runs: run_single per
    sample), then the reward manager class's assemble_rm_scores, as RewardLoopManager.compute_rm_score."""
    async def run():
        worker = RewardLoopWorker(cfg)  # builds the manager through load_reward_manager
        return await worker.compute_score_batch(batch)

    outputs = asyncio.run(run())
    cls = resolve_reward_manager_cls(cfg)
    return outputs, cls.assemble_rm_scores(batch, [o["reward_score"] for o in outputs])


def answers_of(batch):
    return [t.split("=")[-1] if "=" in t else None for t in batch.non_tensor_batch["text"]]


def test_manager_built_by_load_reward_manager(tmp_path, tok_dir):
    from coefgen.integrations.verl_reward_loop import CoefgenRewardManager

    cfg = make_config(tmp_path, tok_dir, 4)
    manager = load_reward_manager(cfg, char_tokenizer(), reward_router_address=None, reward_model_tokenizer=None)
    assert isinstance(manager, CoefgenRewardManager) and manager.table.K == 4


def test_rewards_over_uid_groups_after_reorder(tmp_path, tok_dir):
    K = 4
    tokenizer = char_tokenizer()
    rng = np.random.default_rng(1)
    answers = [[str(v) if v < 3 else None for v in rng.integers(0, 4, K)] for _ in range(5)]
    answers[0] = ["7"] * K  # c = K
    batch = make_batch(tokenizer, K, answers, seed=2)
    cfg = make_config(tmp_path, tok_dir, K)
    outputs, rm_scores = score_through_verl(cfg, batch)
    uids = list(batch.non_tensor_batch["uid"])
    assert len(set(uids)) == 5 and uids != sorted(uids)  # groups are not contiguous
    expected = expected_rewards(answers_of(batch), uids, K)
    prompt_len = batch.batch["prompts"].shape[1]
    lengths = batch.batch["attention_mask"][:, prompt_len:].sum(1)
    assert rm_scores.shape == batch.batch["responses"].shape and rm_scores.dtype == torch.float32
    for i in range(len(batch)):  # the reward sits on the last response token, zeros elsewhere
        assert rm_scores[i, lengths[i] - 1].item() == pytest.approx(expected[i], rel=1e-6)
        assert rm_scores[i].abs().sum().item() == pytest.approx(abs(expected[i]), rel=1e-6)
    assert [o["reward_extra_info"]["coefgen_answer"] for o in outputs] == [a or "" for a in answers_of(batch)]


def test_partial_group_scored_with_its_size(tmp_path, tok_dir):
    K = 4
    batch = make_batch(char_tokenizer(), K, [["1", "1", "2", "3"], ["5", "5", "5", "6"]], seed=3)
    keep = [i for i in range(len(batch)) if batch.non_tensor_batch["uid"][i] != str(uuid.UUID(int=1))][:-1]
    keep += [i for i in range(len(batch)) if batch.non_tensor_batch["uid"][i] == str(uuid.UUID(int=1))]
    partial = batch[keep]  # uid 0 lost one sample: a group of 3, scored with the 3-sample table
    partial.meta_info["validate"] = False
    _, rm_scores = score_through_verl(make_config(tmp_path, tok_dir, K), partial)
    uids = list(partial.non_tensor_batch["uid"])
    assert sorted(uids.count(u) for u in set(uids)) == [3, 4]
    assert rm_scores.sum(1).tolist() == pytest.approx(expected_rewards(answers_of(partial), uids), rel=1e-6)
    with pytest.raises(ValueError, match=r"has 5 samples in this batch but the coefgen table is for K = 4 "
                                         r"\(group sizes 3, 4\)"):
        score_through_verl(make_config(tmp_path, tok_dir, K), make_batch(char_tokenizer(), 5, [list("12345")]))


def test_validation_with_other_n(tmp_path, tok_dir):
    K = 4
    with pytest.raises(ValueError, match=r"val_kwargs.n = 5 .*group sizes 3, 4.*coefgen_validation_reward"):
        load_reward_manager(make_config(tmp_path, tok_dir, K, val_n=5), char_tokenizer())
    cfg = make_config(tmp_path, tok_dir, K, val_n=5, validation_reward=-1.5)
    batch = make_batch(char_tokenizer(), 5, [list("11234"), list("55555")], validate=True)
    _, rm_scores = score_through_verl(cfg, batch)
    assert rm_scores.sum(1).tolist() == [-1.5] * 10  # the documented fixed reward
    # val_kwargs.n = 1 under a group baseline: every advantage is 0 whatever the reward; reward 0.0
    cfg = make_config(tmp_path, tok_dir, K, val_n=1)
    batch = make_batch(char_tokenizer(), 1, [["1"], ["2"], [None]], validate=True)
    _, rm_scores = score_through_verl(cfg, batch)
    assert torch.count_nonzero(rm_scores).item() == 0
    # validation with val_kwargs.n = K is scored like training
    batch = make_batch(char_tokenizer(), K, [["1", "1", "1", "2"]], validate=True)
    _, rm_scores = score_through_verl(make_config(tmp_path, tok_dir, K, val_n=K), batch)
    assert sorted(rm_scores.sum(1).tolist()) == pytest.approx(sorted(expected_rewards(
        answers_of(batch), list(batch.non_tensor_batch["uid"]), K)), rel=1e-6)


def test_refusals_at_construction(tmp_path, tok_dir):
    with pytest.raises(ValueError, match="streams rewards from the agent loop"):
        load_reward_manager(make_config(tmp_path, tok_dir, 4, reward_model=False), char_tokenizer())
    with pytest.raises(ValueError, match=r"v1 trainer .*no uid.*trainer.use_v1=False"):
        load_reward_manager(make_config(tmp_path, tok_dir, 4, use_v1=True), char_tokenizer())
    with pytest.raises(ValueError, match=r"rollout.n = 8 responses per prompt but the coefgen tables are for group "
                                         r"sizes 3, 4"):
        load_reward_manager(make_config(tmp_path, tok_dir, 4, n=8), char_tokenizer())
    with pytest.raises(ValueError, match=r"adv_estimator=grpo divides .*norm_adv_by_std_in_grpo=False"):
        load_reward_manager(make_config(tmp_path, tok_dir, 4, adv="grpo"), char_tokenizer())
    with pytest.raises(ValueError, match=r"adv_estimator=gae uses a learned critic"):
        load_reward_manager(make_config(tmp_path, tok_dir, 4, adv="gae"), char_tokenizer())


def test_compute_rm_score_with_a_ray_reward_worker(tmp_path, tok_dir):
    """verl's own RewardLoopManager.compute_rm_score (pad, chunk, ray.get over reward-loop
    workers, assemble_rm_scores, rm_scores DataProto) with one real local ray worker. Only
    RewardLoopManager.__init__ is bypassed: it would start a reward-model server (GPU)."""
    ray = pytest.importorskip("ray")
    K = 4
    cfg = make_config(tmp_path, tok_dir, K)
    batch = make_batch(char_tokenizer(), K, [["1", "2", "1", "1"], [None, "3", "3", None], ["4"] * 4], seed=5)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        manager = RewardLoopManager.__new__(RewardLoopManager)
        manager.config, manager.reward_model_manager, manager.reward_router_address = cfg, None, None
        manager.reward_loop_workers_class = ray.remote(RewardLoopWorker)
        manager.reward_manager_cls = resolve_reward_manager_cls(cfg)
        manager.reward_loop_workers = [manager.reward_loop_workers_class.remote(cfg, None)]
        out = manager.compute_rm_score(batch)
    finally:
        ray.shutdown()
    expected = expected_rewards(answers_of(batch), list(batch.non_tensor_batch["uid"]), K)
    assert out.batch["rm_scores"].sum(1).tolist() == pytest.approx(expected, rel=1e-6)
    assert list(out.non_tensor_batch["coefgen_answer"]) == [a or "" for a in answers_of(batch)]


def test_validation_as_verl_0_9_1_sends_it_padded_and_unflagged(tmp_path, tok_dir):
    """In the legacy trainer's _validate, the batch reaching compute_rm_score carries no
    meta_info["validate"] (the agent loop's output replaces meta_info) and is padded by
    pad_dataproto_to_divisor: both are handled."""
    from verl.protocol import pad_dataproto_to_divisor

    K = 4
    cfg = make_config(tmp_path, tok_dir, K, val_n=1, validation_reward=-3.0)
    batch, _ = pad_dataproto_to_divisor(make_batch(char_tokenizer(), 1, [["1"], ["2"], [None]]), 4)
    batch.meta_info = {}
    assert len(batch) == 4
    _, rm_scores = score_through_verl(cfg, batch)
    assert rm_scores.sum(1).tolist() == [0.0] * 4  # groups of 1 (and the padded 2) under loo: reward 0
    # val_kwargs.n = K: whole groups scored, the padding rows get the reward of the rows they copy
    cfg = make_config(tmp_path, tok_dir, K)
    real = make_batch(char_tokenizer(), K, [["1", "1", "2", None], ["5", "5", "5", "5"], ["a", "b", "a", "b"]], seed=4)
    batch, pad = pad_dataproto_to_divisor(real, 7)
    batch.meta_info = {}
    assert pad == 2
    _, rm_scores = score_through_verl(cfg, batch)
    expected = expected_rewards(answers_of(real), list(real.non_tensor_batch["uid"]), K)
    assert rm_scores.sum(1).tolist() == pytest.approx(expected + expected[:2], rel=1e-6)
    # a partial group in a batch that also holds whole groups is scored with its own size's table
    keep = list(range(len(real)))
    drop = [i for i in keep if real.non_tensor_batch["uid"][i] == str(uuid.UUID(int=2))][0]
    partial = real[[i for i in keep if i != drop]]
    partial.meta_info = {}
    _, rm_scores = score_through_verl(cfg, partial)
    assert rm_scores.sum(1).tolist() == pytest.approx(
        expected_rewards(answers_of(partial), list(partial.non_tensor_batch["uid"])), rel=1e-6)
