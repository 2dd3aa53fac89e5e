"""Trainer integrations on inputs shaped like TRL's, verl's and OpenRLHF's (no trainer installed):
families, the baseline check, composition, the missing-answer rule, TRL's gather."""

import re
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from coefgen import integrations as I
from coefgen.runtime import RewardTable, TableFamily

K = 4


def fake_table(K=K, baseline="none", scale=10.0):
    # t_c = scale * c: the reward reveals the count directly
    return RewardTable({"K": K, "divergence": "kl", "estimator": "aqp", "sha256": f"{K}{baseline}".ljust(64, "0"),
                        "baseline": baseline, "values": [scale * c for c in range(1, K + 1)]})


@pytest.fixture
def table():
    return fake_table()


def boxed(text):
    m = re.search(r"\\boxed\{([^}]*)\}", text)
    return m.group(1).strip() if m else None


def chat(answer):
    text = f"Let me think. The answer is \\boxed{{{answer}}}." if answer is not None else "I give up."
    return [{"role": "assistant", "content": text}]


def test_module_imports_no_trainer():
    import subprocess
    import sys

    code = ("import sys, coefgen.integrations; "
            "bad = [m for m in ('torch', 'trl', 'verl', 'openrlhf', 'transformers') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_verl_uid_keyed_non_contiguous(table):
    rng = np.random.default_rng(0)
    uids = [str(uuid.UUID(int=i)) for i in range(3)]
    groups = {uids[0]: ["1", "1", "2", "3"], uids[1]: ["7"] * 4, uids[2]: ["a", "b", "a", "b"]}
    samples = [(u, a) for u in uids for a in groups[u]]
    order = rng.permutation(len(samples))
    shuffled = [samples[i] for i in order]
    uid_arr = np.array([u for u, _ in shuffled], dtype=object)  # like non_tensor_batch["uid"]
    out = I.verl_rewards(table, [a for _, a in shuffled], uid_arr)
    expected = {(uids[0], "1"): 20, (uids[0], "2"): 10, (uids[0], "3"): 10, (uids[1], "7"): 40,
                (uids[2], "a"): 20, (uids[2], "b"): 20}
    assert out.tolist() == [float(expected[s]) for s in shuffled]
    with pytest.raises(ValueError, match="K = 4"):
        I.verl_rewards(table, ["1"] * 3, np.array(["u"] * 3, dtype=object))


def test_place_token_level():
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    out = I.place_token_level([1.5, -2.0, 3.0], mask)
    expected = np.zeros((3, 5), dtype=np.float32)
    expected[0, 2], expected[1, 4], expected[2, 0] = 1.5, -2.0, 3.0
    assert out.dtype == np.float32 and np.array_equal(out, expected)
    with pytest.raises(ValueError, match="empty response"):
        I.place_token_level([1.0], np.zeros((1, 3)))


class CharTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == 0))


def test_verl_reward_manager_on_a_dataproto_like_batch(table):
    tok = CharTokenizer()
    texts = ["ans 5", "ans 5", "ans 9", "ans 5", "ans 1", "ans 2", "ans 1", "ans 10"]
    uid = np.array(["g1", "g1", "g1", "g1", "g2", "g2", "g2", "g2"], dtype=object)[[0, 4, 1, 5, 2, 6, 3, 7]]
    texts = [texts[i] for i in [0, 4, 1, 5, 2, 6, 3, 7]]
    P, R = 3, 8
    prompts = np.ones((len(texts), P), dtype=np.int64)
    responses = np.zeros((len(texts), R), dtype=np.int64)
    attention = np.zeros((len(texts), P + R), dtype=np.int64)
    attention[:, :P] = 1
    for i, t in enumerate(texts):
        responses[i, :len(t)] = [ord(ch) for ch in t]
        attention[i, P:P + len(t)] = 1
    data = SimpleNamespace(batch={"prompts": prompts, "responses": responses, "attention_mask": attention},
                           non_tensor_batch={"uid": uid})
    manager = I.VerlRewardManager(tok, table, lambda s: s.split()[-1])
    out = manager(data, return_dict=True)
    tensor = out["reward_tensor"]
    assert tensor.shape == (8, R)
    lengths = [len(t) for t in texts]
    placed = [tensor[i, lengths[i] - 1] for i in range(8)]
    assert placed == [30.0, 20.0, 30.0, 10.0, 10.0, 20.0, 30.0, 10.0]
    assert tensor.sum() == sum(placed)
    assert out["reward_extra_info"]["answer_count"] == [3, 2, 3, 1, 1, 2, 3, 1]


def test_completion_text_forms():
    assert I.completion_text("plain") == "plain"
    assert I.completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert I.completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"},
                                                                {"type": "image"}, {"type": "text", "text": "y"}]}]) == "xy"


def test_trl_prompt_runs():
    assert I.trl.prompt_runs(["a", "a", "b", "a"]) == [2, 1, 1]
    assert I.trl.prompt_runs([[{"role": "user", "content": "x"}]] * 3) == [3]


def test_verl_group_scores_whole_groups_only(table):
    answers = ["1", "1", "2", "3", "x", "y"]
    uids = np.array(["a", "a", "a", "a", "b", "b"], dtype=object)
    with pytest.raises(ValueError, match="uid 'b' has 2 samples in this batch but the coefgen table is for K = 4"):
        I.verl_group_scores(table, answers, uids)
    rewards, counts = I.verl_group_scores(table, answers, uids, other_size_reward=-7.0)
    assert rewards.tolist() == [20.0, 20.0, 10.0, 10.0, -7.0, -7.0]
    assert counts.tolist() == [2, 2, 1, 1, 0, 0]
    # interleaved uids, and None answers as singletons
    rewards, counts = I.verl_group_scores(table, [None, "z", None, "z", "z", "z", "q", "q"],
                                          ["u", "u", "u", "u", "v", "v", "v", "v"])
    assert counts.tolist() == [1, 2, 1, 2, 2, 2, 2, 2] and rewards.tolist() == [10.0 * c for c in counts]


def test_verl_reward_manager_built_like_a_reward_loop_manager_points_to_the_new_one():
    with pytest.raises(TypeError, match="CoefgenRewardManager"):
        I.VerlRewardManager(config={}, tokenizer=None, compute_score=None)


def test_verl_padding_rows_recognises_only_verl_padding():
    K = 2
    uids = ["a", "a", "b", "b"]
    resp = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
    assert I.verl.verl_padding_rows(uids, resp, K) == 0  # whole groups: nothing is padding
    # pad_dataproto_to_divisor(…, 3): two copies of rows 0, 1 appended
    padded_uids, padded = uids + uids[:2], np.concatenate([resp, resp[:2]])
    assert I.verl.verl_padding_rows(padded_uids, padded, K) == 2
    # the same uids but other responses: real extra samples of uid a, not padding
    other = np.concatenate([resp, [[9, 9], [3, 4]]])
    assert I.verl.verl_padding_rows(padded_uids, other, K) == 0
    # a trailing copy that does not leave whole groups is not taken for padding either
    assert I.verl.verl_padding_rows(["a", "b", "b", "a"], np.array([[0], [1], [2], [0]]), K) == 0


def test_bon_quantile_rewards_is_exported_by_integrations():
    import coefgen.bon
    import coefgen.integrations

    assert coefgen.integrations.bon_quantile_rewards is coefgen.bon.bon_quantile_rewards
    assert "bon_quantile_rewards" in coefgen.integrations.__all__


# --- TRL ---------------------------------------------------------------------------------------

class GRPOTrainer:
    """What a TRL 1.16 reward function can reach: log_metric/log_extra are bound methods of the
    trainer, which carries num_generations(_eval), scale_rewards, multi_objective_aggregation and
    an accelerator (the class name is what coefgen recognises, as for TRL's own class)."""

    def __init__(self, num_generations=K, num_generations_eval=None, training=True, scale_rewards="none",
                 multi_objective_aggregation="sum_then_normalize", num_processes=1, process_index=0):
        self.num_generations = num_generations
        self.num_generations_eval = num_generations_eval or num_generations
        self.model = SimpleNamespace(training=training)
        self.scale_rewards = scale_rewards
        self.multi_objective_aggregation = multi_objective_aggregation
        self.accelerator = SimpleNamespace(num_processes=num_processes, process_index=process_index)
        self.reward_funcs = []

    def _log_metric(self, name, value):
        pass

    def _log_completion_extra(self, column, values):
        pass

    def kwargs(self, **columns):
        return {"trainer_state": object(), "log_metric": self._log_metric, "log_extra": self._log_completion_extra,
                **columns}


class RLOOTrainer(GRPOTrainer):
    def __init__(self, normalize_advantages=False, reward_clip_range=None, **kw):
        super().__init__(**kw)
        del self.scale_rewards, self.multi_objective_aggregation
        self.normalize_advantages = normalize_advantages
        self.reward_clip_range = reward_clip_range


def mean_table():
    return fake_table(baseline="mean")


def test_trl_rewards_are_t_of_c_over_consecutive_groups(table):
    f = I.trl_reward_func(mean_table(), boxed, objective="consensus")
    prompts = [[{"role": "user", "content": "2+2?"}]] * K + [[{"role": "user", "content": "3+3?"}]] * K
    answers = ["4", "4", "5", "4", "6", "7", "8", None]
    out = f(prompts=prompts, completions=[chat(a) for a in answers], completion_ids=[[1]] * 8, **GRPOTrainer().kwargs())
    assert out == [30.0, 30.0, 10.0, 30.0, 10.0, 10.0, 10.0, 10.0]
    assert isinstance(out, list) and all(type(x) is float for x in out)
    assert f.__name__ == "coefgen_kl_aqp_mean_K4"
    g = I.trl_reward_func(table, boxed, objective="consensus", num_generations=K, invalid_reward=-1.0)
    texts = [c[0]["content"] for c in [chat(a) for a in answers]]
    assert g(["p"] * 4 + ["q"] * 4, texts) == [30.0, 30.0, 10.0, 30.0, 10.0, 10.0, 10.0, -1.0]


def test_trl_objective_is_required_and_validated(table):
    with pytest.raises(TypeError, match="objective= is required"):
        I.trl_reward_func(table, boxed)
    with pytest.raises(ValueError, match="must be one of kl_regularized, entropy_bonus, consensus"):
        I.trl_reward_func(table, boxed, objective="maximise")
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        I.trl_reward_func(table, boxed, objective="entropy_bonus", beta=-1)
    with pytest.raises(ValueError, match="log_p_ref is the reference of objective 'kl_regularized'"):
        I.trl_reward_func(table, boxed, objective="consensus", log_p_ref=lambda a: 0.0)


def test_trl_composition_with_a_task_reward_from_a_dataset_column(table):
    seen = []

    def correct(prompt, completion, answer, solution, **kw):
        seen.append((prompt, completion, answer, solution))
        return 1.0 if answer == solution else 0.0

    answers = ["4", "4", "5", None]
    comps = [chat(a) for a in answers]
    kw = GRPOTrainer().kwargs(solution=["4"] * 4)
    lp = {"4": np.log(0.5), "5": np.log(0.25), None: np.log(0.25)}
    f = I.trl_reward_func(mean_table(), boxed, objective="kl_regularized", beta=0.5, task_reward=correct, log_p_ref=lp)
    out = f(["p"] * 4, comps, **kw)
    t = [20.0, 20.0, 10.0, 10.0]
    R = [1.0, 1.0, 0.0, 0.0]
    assert out == [R[i] + 0.5 * lp[answers[i]] - 0.5 * t[i] for i in range(4)]
    assert seen[0] == ("p", comps[0][0]["content"], "4", "4") and seen[3][2] is None
    f = I.trl_reward_func(mean_table(), boxed, objective="entropy_bonus", beta=2.0, task_reward=correct)
    assert f(["p"] * 4, comps, **kw) == [R[i] - 2.0 * t[i] for i in range(4)]
    f = I.trl_reward_func(mean_table(), boxed, objective="consensus", beta=2.0, task_reward=correct, invalid_reward=-9.0)
    assert f(["p"] * 4, comps, **kw) == [R[i] + 2.0 * t[i] for i in range(3)] + [-9.0]
    bad = I.trl_reward_func(mean_table(), boxed, objective="consensus", task_reward=lambda *a, **k: float("nan"))
    with pytest.raises(ValueError, match="task_reward of sample 0 is nan"):
        bad(["p"] * 4, comps, **kw)


def test_trl_missing_answers_one_rule(table):
    """The shared np.nan, fresh float('nan') and None: each a singleton (issue: np.nan was c = K)."""
    f = I.trl_reward_func(table, lambda s: np.nan if "give up" in s else boxed(s), objective="consensus")
    assert f(["p"] * 4, [chat(None)] * 4) == [10.0] * 4
    g = I.trl_reward_func(table, lambda s: None if "give up" in s else boxed(s), objective="consensus")
    assert g(["p"] * 4, [chat(None), chat(None), chat("1"), chat("1")]) == [10.0, 10.0, 20.0, 20.0]


def test_trl_default_scale_rewards_refused_with_the_fix(caplog):
    f = I.trl_reward_func(mean_table(), boxed, objective="consensus")
    trainer = GRPOTrainer(scale_rewards="group")
    with pytest.raises(I.BaselineMismatch) as e:
        f(["p"] * 4, [chat("1")] * 4, **trainer.kwargs())
    msg = str(e.value)
    assert 'GRPOConfig.scale_rewards=\'group\' (the default)' in msg and 'scale_rewards="none"' in msg
    assert "allow_std_normalization=True" in msg and "\n" not in msg
    with pytest.raises(I.BaselineMismatch):  # the early check, before training, says the same
        I.check_trl_trainer(trainer, f)
    # True (TRL's bool form) is "group"; normalize_then_sum normalises each function by its group std
    with pytest.raises(I.BaselineMismatch, match="normalize_then_sum"):
        f(["p"] * 4, [chat("1")] * 4, **GRPOTrainer(multi_objective_aggregation="normalize_then_sum").kwargs())
    # the opt-in: accepted, the cost logged once
    import coefgen.integrations.common as C

    C._logged.clear()
    g = I.trl_reward_func(mean_table(), boxed, objective="consensus", allow_std_normalization=True)
    with caplog.at_level("WARNING", logger="coefgen"):
        for _ in range(3):
            assert g(["p"] * 4, [chat("1")] * 4, **GRPOTrainer(scale_rewards="group").kwargs()) == [40.0] * 4
    costs = [r for r in caplog.records if "allow_std_normalization=True" in r.getMessage()]
    assert len(costs) == 1 and "no fixed table is unbiased" in costs[0].getMessage()


@pytest.mark.parametrize("trainer,good,bad", [
    (GRPOTrainer(scale_rewards="none"), "mean", ("none", "loo")),
    (GRPOTrainer(scale_rewards="batch"), "mean", ("none", "loo")),
    (RLOOTrainer(), "loo", ("none", "mean")),
    (RLOOTrainer(normalize_advantages=True), "loo", ("mean",)),
])
def test_trl_baseline_matched_strictly(trainer, good, bad):
    ok = I.trl_reward_func(fake_table(baseline=good), boxed, objective="consensus")
    assert ok(["p"] * 4, [chat("1")] * 4, **trainer.kwargs()) == [40.0] * 4
    for b in bad:
        f = I.trl_reward_func(fake_table(baseline=b), boxed, objective="consensus")
        with pytest.raises(I.BaselineMismatch) as e:
            f(["p"] * 4, [chat("1")] * 4, **trainer.kwargs())
        msg = str(e.value)
        assert f"table is made for baseline {b!r}" in msg and f"baseline {good!r}" in msg
        assert type(trainer).__name__ in msg


def test_trl_rloo_reward_clipping_refused():
    f = I.trl_reward_func(fake_table(baseline="loo"), boxed, objective="consensus")
    with pytest.raises(I.BaselineMismatch, match=r"reward_clip_range = \(-1, 1\).*reward_clip_range=None"):
        f(["p"] * 4, [chat("1")] * 4, **RLOOTrainer(reward_clip_range=(-1, 1)).kwargs())


def test_trl_family_scores_each_group_size_with_its_own_table():
    fam = TableFamily([fake_table(3, "mean", 1.0), fake_table(4, "mean", 10.0), fake_table(6, "mean", 100.0)])
    f = I.trl_reward_func(fam, boxed, objective="consensus")
    assert f(["p"] * 3, [chat("1")] * 3, **GRPOTrainer(num_generations=3).kwargs()) == [3.0] * 3
    assert f(["p"] * 4, [chat("1")] * 4, **GRPOTrainer(num_generations=4).kwargs()) == [40.0] * 4
    with pytest.raises(ValueError, match=r"num_generations = 5\) but the coefgen table family has no table for 5 \(sizes 3, 4, 6\)"):
        f(["p"] * 5, [chat("1")] * 5, **GRPOTrainer(num_generations=5).kwargs())
    with pytest.raises(ValueError, match=r"num_generations_eval = 8\).*sizes 3, 4, 6"):
        f(["p"] * 8, [chat("1")] * 8, **GRPOTrainer(num_generations=4, num_generations_eval=8, training=False).kwargs())
    with pytest.raises(ValueError, match="pass num_generations="):
        f(["p"] * 4, [chat("1")] * 4)  # outside a trainer, several sizes: the group size must be given
    # under a group baseline, groups of 2 carry no signal: 0.0
    assert f(["p"] * 2, [chat("1"), chat("2")], **GRPOTrainer(num_generations=2).kwargs()) == [0.0, 0.0]


def test_trl_larger_groups_with_equal_prompts_caught_by_the_trainer():
    f = I.trl_reward_func(mean_table(), boxed, objective="consensus")
    prompts, comps = ["p"] * 8, [chat("1")] * 8  # one prompt, 8 completions: looks like two groups of 4
    assert f(prompts, comps) == [40.0] * 8  # without the trainer this is undetectable
    with pytest.raises(ValueError, match=r"8 completions per prompt \(num_generations = 8\).*no table for 8"):
        f(prompts, comps, **GRPOTrainer(num_generations=8, scale_rewards="none").kwargs())


def test_trl_partial_or_misaligned_groups_refused(table):
    f = I.trl_reward_func(table, boxed, objective="consensus")
    with pytest.raises(ValueError, match="do not split into groups of num_generations = 4"):
        f(["p"] * 6, [chat("1")] * 6)
    with pytest.raises(ValueError, match="do not share one prompt"):
        f(["p", "p", "q", "q"] + ["r"] * 4, [chat("1")] * 8)
    with pytest.raises(ValueError, match="runs of 2 completions per prompt"):
        f(["p", "p", "q", "q", "r", "r"], [chat("1")] * 6)
    with pytest.raises(ValueError, match="no table for 8"):
        I.trl_reward_func(table, boxed, objective="consensus", num_generations=8)


SLICES = {0: ["a", "a", "b", "a", "x", "y"], 1: ["x", "x", "c", "c", "c", "c"]}  # the middle group straddles
EXPECTED = [30.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0, 30.0, 40.0, 40.0, 40.0, 40.0]


def test_trl_user_gather_is_checked(table):
    def make_gather(rank, offset=None, order=(0, 1)):
        def gather(local):
            assert local == SLICES[rank]
            return SLICES[order[0]] + SLICES[order[1]], 6 * rank if offset is None else offset
        return gather

    out = []
    for rank in (0, 1):
        f = I.trl_reward_func(table, boxed, objective="consensus", gather=make_gather(rank))
        out += f(None, [chat(a) for a in SLICES[rank]])
    assert out == EXPECTED
    comps = [chat(a) for a in SLICES[1]]
    for gather, msg in [(make_gather(1, order=(1, 0)), "not this process's answers"),
                        (make_gather(1, offset=9), "out of range"),
                        (lambda l: (list("cccccccc") + l, 0), "not this process's answers"),
                        (lambda l: l, "must return")]:
        f = I.trl_reward_func(table, boxed, objective="consensus", gather=gather)
        with pytest.raises((ValueError, TypeError), match=msg):
            f(None, comps)
    # with the trainer known: the total and TRL's slice (process_index * n) are checked too
    f = I.trl_reward_func(mean_table(), boxed, objective="consensus", gather=make_gather(1, offset=0, order=(1, 0)))
    with pytest.raises(ValueError, match=r"this process \(index 1\) at offset 6"):
        f(None, comps, **GRPOTrainer(num_processes=2, process_index=1).kwargs())


def test_trl_gathers_by_itself_under_several_processes(table, monkeypatch):
    """Two 'processes' as threads meeting in a fake gather_object: each gets its own slice of
    the rewards over whole groups; a wrong gathered order is refused."""
    import threading

    import coefgen.integrations.trl as T

    barrier = threading.Barrier(2)
    box = {}
    local = threading.local()

    def fake_gather_object(records):
        box[local.rank] = records
        barrier.wait()
        out = box[0] + box[1] if not local.swap else box[1] + box[0]
        barrier.wait()
        return out

    monkeypatch.setattr(T, "_processes", lambda trainer: (2, local.rank, fake_gather_object))

    def run(swap):
        results, errors = {}, {}

        def worker(rank):
            local.rank, local.swap = rank, swap
            f = I.trl_reward_func(table, boxed, objective="consensus")
            prompts = ["p"] * 4 + ["q"] * 2 if rank == 0 else ["q"] * 2 + ["r"] * 4
            try:
                results[rank] = f(prompts, [chat(a) for a in SLICES[rank]])
            except ValueError as e:
                errors[rank] = str(e)

        threads = [threading.Thread(target=worker, args=(r,)) for r in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        return results, errors

    results, errors = run(swap=False)
    assert errors == {} and results[0] + results[1] == EXPECTED
    results, errors = run(swap=True)
    assert results == {} and all("not every process's answers in process order" in e for e in errors.values())


# --- OpenRLHF ----------------------------------------------------------------------------------

def test_openrlhf_reward_func_batches_and_one_prompt_per_query():
    loo = fake_table(baseline="loo")
    f = I.openrlhf_reward_func(loo, lambda s: s.strip().split()[-1], advantage_estimator="rloo", objective="consensus")
    prompts = ["Q1:"] * 4 + ["Q2:"] * 4
    queries = [p + r for p, r in zip(prompts, [" a", " a", " b", " a", " c", " d", " e", " f"])]
    out = f(queries, prompts, labels=None)
    assert set(out) == {"rewards", "scores", "extra_logs"}  # what OpenRLHF reads from a reward_func
    assert np.asarray(out["rewards"]).tolist() == [30, 30, 10, 30, 10, 10, 10, 10]
    assert np.asarray(out["scores"]).tolist() == np.asarray(out["rewards"]).tolist()
    assert np.asarray(out["extra_logs"]["coefgen_count"]).tolist() == [3, 3, 1, 3, 1, 1, 1, 1]
    # 16 queries with 8 prompts: refused, never zipped into 8 rewards
    with pytest.raises(ValueError, match="16 queries but 8 prompts"):
        f(queries + queries, prompts)
    with pytest.raises(ValueError, match="8 queries but 4 labels"):
        f(queries, prompts, ["l"] * 4)
    with pytest.raises(ValueError, match="do not share one prompt"):
        f(queries, ["Q1:"] * 3 + ["Q2:"] * 5)
    with pytest.raises(ValueError, match="once per sample"):
        f(queries[:1], prompts[:1])  # OpenRLHF's per-sample call
    # the label reaches the task reward
    g = I.openrlhf_reward_func(loo, lambda s: s.strip().split()[-1], advantage_estimator="rloo", objective="consensus",
                               beta=0.5, task_reward=lambda p, c, a, label: float(a == label))
    out = g(queries, prompts, ["a"] * 8)
    assert np.asarray(out["rewards"]).tolist() == [16, 16, 5, 16, 5, 5, 5, 5]


@pytest.mark.parametrize("estimator,good", [("rloo", "loo"), ("dr_grpo", "mean"), ("reinforce_baseline", "mean"),
                                            ("reinforce", "none"), ("gae", "none")])
def test_openrlhf_advantage_estimator_matched_at_construction(estimator, good):
    I.openrlhf_reward_func(fake_table(baseline=good), str, advantage_estimator=estimator, objective="consensus")
    for b in {"none", "loo", "mean"} - {good}:
        with pytest.raises(I.BaselineMismatch, match=f"--algo.advantage.estimator {estimator}.*baseline {b!r}"):
            I.openrlhf_reward_func(fake_table(baseline=b), str, advantage_estimator=estimator, objective="consensus")


def test_openrlhf_group_norm_flash_and_missing_estimator():
    mean = fake_table(baseline="mean")
    with pytest.raises(I.BaselineMismatch, match="group_norm.*dr_grpo.*allow_std_normalization=True"):
        I.openrlhf_reward_func(mean, str, advantage_estimator="group_norm", objective="consensus")
    I.openrlhf_reward_func(mean, str, advantage_estimator="group_norm", objective="consensus",
                           allow_std_normalization=True)
    with pytest.raises(ValueError, match="flash_reinforce subtracts the mean of the whole rollout batch"):
        I.openrlhf_reward_func(mean, str, advantage_estimator="flash_reinforce", objective="consensus")
    with pytest.raises(TypeError, match="advantage_estimator= is required"):
        I.openrlhf_reward_func(mean, str, objective="consensus")


def test_openrlhf_rewards_reshaped(table):
    ids = np.array([[0, 0, 1, 2], [5, 5, 5, 5], [1, 2, 1, 2]])
    kw = dict(advantage_estimator="reinforce", objective="consensus")
    assert I.openrlhf_rewards(table, ids, **kw).tolist() == [[20, 20, 10, 10], [40] * 4, [20] * 4]
    strs = [["x", "x", None, np.nan], ["(1, 2)", "1,2", "(1, 2)", "z"]]
    assert I.openrlhf_rewards(table, strs, **kw).tolist() == [[20, 20, 10, 10], [20, 10, 20, 10]]
    with pytest.raises(ValueError, match="n_samples_per_prompt = 8 but the coefgen table family has no table for 8"):
        I.openrlhf_rewards(table, np.zeros((2, 8), dtype=int), **kw)
    assert I.openrlhf_rewards(table, ids, invalid_reward=-1.0, advantage_estimator="reinforce",
                              objective="entropy_bonus", beta=0.1).tolist() == [[-2, -2, -1, -1], [-4] * 4, [-2] * 4]


def test_openrlhf_reward_func_refuses_to_load_in_openrlhf_per_sample_executor(table):
    """Created while OpenRLHF's openrlhf.utils.agent runs a --remote_rm_url file: a start-up error."""
    make = lambda: I.openrlhf_reward_func(table, str, advantage_estimator="reinforce", objective="consensus")  # noqa: E731
    code = compile("make()", "reward_file.py", "exec")
    with pytest.raises(RuntimeError, match="once per sample.*--agent_func_path"):
        exec(code, {"__name__": "openrlhf.utils.agent", "make": make})
    make()  # elsewhere it is created normally


# --- shared pieces ------------------------------------------------------------------------------

def test_check_baseline_rule():
    I.check_baseline("mean", "mean")
    I.check_baseline("loo", "loo", setting="x")
    with pytest.raises(I.BaselineMismatch, match=r"uses a leave-one-out baseline \(S\) but the table is made for baseline 'mean'"):
        I.check_baseline("mean", "loo", setting="S", trainer="T")
    with pytest.raises(I.BaselineMismatch, match=r"T divides each group's advantages.*\(S\).*Fix: F; or pass"):
        I.check_baseline("mean", "mean", True, "S", "F", trainer="T")
    I.check_baseline("mean", "mean", True, "S", "F", allow_std_normalization=True, trainer="T")
    with pytest.raises(I.BaselineMismatch):  # the opt-in does not excuse a wrong baseline
        I.check_baseline("none", "mean", True, "S", "F", allow_std_normalization=True, trainer="T")
    with pytest.raises(ValueError, match="trainer_baseline must be one of"):
        I.check_baseline("mean", "grpo")


def test_resolve_family_from_paths_tables_and_keywords(tmp_path, monkeypatch):
    from coefgen import __version__
    from coefgen.writers import render

    import coefgen.compiler
    import coefgen.runtime as R

    payload = coefgen.compiler.compile_table("euclidean", 4, "exact", {})
    path = tmp_path / "t.json"
    path.write_bytes(render(payload, "json", __version__))
    f = I.trl_reward_func(str(path), boxed, objective="consensus")
    # euclidean exact K=4: t_c = (c-1)/3 - 1
    assert f(["p"] * 4, [chat("1"), chat("1"), chat("1"), chat("2")]) == pytest.approx([-1 / 3] * 3 + [-1.0])
    monkeypatch.setattr(R, "DEFAULT_TABLES_DIR", __import__("pathlib").Path(__file__).resolve().parents[1] / "tables")
    fam = I.resolve_family(divergence="euclidean", K=5)
    assert fam.sizes == (2, 3, 4, 5) and fam.table_for(4).values.tolist() == R.load(path).values.tolist()
    g = I.trl_reward_func(extract_answer=boxed, divergence="euclidean", K=5, objective="consensus", num_generations=4)
    assert g.family.sizes == (2, 3, 4, 5)
    assert g(["p"] * 4, [chat("1"), chat("1"), chat("1"), chat("2")]) == pytest.approx([-1 / 3] * 3 + [-1.0])
    with pytest.raises(TypeError, match="not both"):
        I.resolve_family(str(path), K=4)
    with pytest.raises(TypeError, match="K="):
        I.resolve_family()


def test_check_trl_trainer_checks_the_evaluation_size_only_with_an_eval_dataset():
    fam = TableFamily([fake_table(4, "mean")])
    f = I.trl_reward_func(fam, boxed, objective="consensus")
    trainer = GRPOTrainer(num_generations=4, num_generations_eval=3)
    trainer.reward_funcs = [f, lambda **kw: [0.0]]  # other reward functions are left alone
    I.check_trl_trainer(trainer)
    trainer = GRPOTrainer(num_generations=4, num_generations_eval=3)
    trainer.eval_dataset = ["rows"]
    trainer.reward_funcs = [f]
    with pytest.raises(ValueError, match=r"num_generations_eval = 3\) but the coefgen table family has no table for 3"):
        I.check_trl_trainer(trainer)


def test_trl_self_gather_a_failing_extractor_fails_every_process(table, monkeypatch):
    """An extractor that raises on one process: every process raises (none waits forever)."""
    import threading

    import coefgen.integrations.trl as T

    barrier = threading.Barrier(2)
    box, local = {}, threading.local()

    def fake_gather_object(records):
        box[local.rank] = records
        barrier.wait()
        out = box[0] + box[1]
        barrier.wait()
        return out

    monkeypatch.setattr(T, "_processes", lambda trainer: (2, local.rank, fake_gather_object))
    errors = {}

    def worker(rank):
        local.rank = rank

        def extract(text):
            if rank == 1:
                raise KeyError("boom")
            return boxed(text)

        f = I.trl_reward_func(table, extract, objective="consensus")
        try:
            f(None, [chat(a) for a in SLICES[rank]])
        except Exception as e:  # noqa: BLE001
            errors[rank] = e

    threads = [threading.Thread(target=worker, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(errors[1], KeyError)
    assert isinstance(errors[0], RuntimeError) and "process 1 failed to extract its answers (KeyError" in str(errors[0])


# --- one meaning for a table path (every integration) ---------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
STEM = "kl-aqp-gamma0.75-max_mse4plugin"


def _values(k, folder=REPO / "tables", name=None):
    """t[1..k] read straight from a table file's JSON (not through coefgen)."""
    import json

    payload = json.loads((folder / (name or f"{STEM}-K{k}.json")).read_text())
    assert payload["K"] == k
    return [float(v) for v in payload["values"]]


def _reseal(src, dst, **changes):
    """A copy of table file ``src`` with ``changes`` (values and K kept consistent by the caller), re-sealed."""
    import json

    from coefgen.payload import canonical_json, seal

    payload = json.loads(src.read_text())
    payload.update(changes)
    dst.write_text(canonical_json(seal(payload)))
    return dst


def test_a_path_means_the_file_and_its_smaller_k_siblings(tmp_path):
    """resolve_family(path): the file plus the files beside it named <same stem>-K<k> (k smaller,
    same format), each holding its own table; other stems (-loo-, -mean-) and larger K are not
    members; a file without a -K<k> suffix is a family of one."""
    import shutil

    for k in (2, 3, 5, 6):
        shutil.copy(REPO / "tables" / f"{STEM}-K{k}.json", tmp_path)
    shutil.copy(REPO / "tables" / f"{STEM}-K5.npz", tmp_path)  # another format: not a member of the JSON family
    # a loo file with the same prefix is another stem
    exact = __import__("json").loads((REPO / "tables" / f"{STEM}-K3.json").read_text())["values_exact"]
    _reseal(REPO / "tables" / f"{STEM}-K3.json", tmp_path / f"{STEM}-loo-K4.json", schema="coefgen.table/2",
            baseline="loo", K=4, values=_values(3) + _values(3)[-1:], values_exact=exact + exact[-1:])
    fam = I.resolve_family(str(tmp_path / f"{STEM}-K5.json"))
    assert fam.sizes == (2, 3, 5) and fam.baseline == "none"  # K4 absent, K6 larger: not members
    for k in fam.sizes:
        assert fam.table_for(k).values.tolist() == _values(k)
    assert I.resolve_family(tmp_path / f"{STEM}-K5.npz").sizes == (5,)
    assert I.resolve_family(str(tmp_path / f"{STEM}-loo-K4.json")).sizes == (4,)
    shutil.copy(REPO / "tables" / f"{STEM}-K4.json", tmp_path / "mine.json")
    assert I.resolve_family(str(tmp_path / "mine.json")).sizes == (4,)
    # a list: exactly those tables; a RewardTable: one size; the default set by keywords
    assert I.resolve_family([str(tmp_path / f"{STEM}-K5.json"), str(tmp_path / f"{STEM}-K2.json")]).sizes == (2, 5)
    assert I.resolve_family(I.as_table(str(tmp_path / f"{STEM}-K5.json"))).sizes == (5,)


def test_a_sibling_of_another_kind_or_size_is_refused(tmp_path):
    import shutil

    shutil.copy(REPO / "tables" / f"{STEM}-K4.json", tmp_path)
    shutil.copy(REPO / "tables" / f"{STEM}-K3.json", tmp_path / f"{STEM}-K2.json")  # holds K = 3
    with pytest.raises(ValueError, match=r"-K2.json: the name says K = 2 but the table holds K = 3"):
        I.resolve_family(str(tmp_path / f"{STEM}-K4.json"))
    (tmp_path / f"{STEM}-K2.json").unlink()
    _reseal(REPO / "tables" / f"{STEM}-K3.json", tmp_path / f"{STEM}-K3.json", estimator="minimax")
    with pytest.raises(ValueError, match=r"-K3.json \(kl/minimax/baseline none\) is named as a smaller-K sibling"):
        I.resolve_family(str(tmp_path / f"{STEM}-K4.json"))
    (tmp_path / f"{STEM}-K3.json").write_text("{}")
    with pytest.raises(ValueError, match="K3.json"):  # a damaged sibling is refused, never skipped
        I.resolve_family(str(tmp_path / f"{STEM}-K4.json"))


def test_every_integration_scores_a_short_group_from_one_path(tmp_path):
    """The same path in TRL, OpenRLHF, verl and group_rewards: a group that lost a sample is scored
    with the table of its own size, read from the sibling file."""
    path = str(REPO / "tables" / f"{STEM}-K4.json")
    t3, t4 = _values(3), _values(4)
    f = I.trl_reward_func(path, boxed, objective="consensus")
    assert f.family.sizes == (2, 3, 4)
    assert f(["p"] * 4, [chat(a) for a in "1112"]) == [t4[2]] * 3 + [t4[0]]  # outside a trainer: the path's K
    f3 = I.trl_reward_func(path, boxed, objective="consensus", num_generations=3)
    assert f3(["p"] * 3, [chat(a) for a in "112"]) == [t3[1], t3[1], t3[0]]
    assert I.openrlhf_rewards(path, [["1", "1", "2"]], advantage_estimator="reinforce", objective="consensus").tolist() \
        == [[t3[1], t3[1], t3[0]]]
    g = I.openrlhf_reward_func(path, lambda s: s[-1:], advantage_estimator="reinforce", objective="consensus")
    out = g(["q=1"] * 4, ["q="] * 4)["rewards"]  # a torch float32 tensor where torch is installed, as OpenRLHF takes
    assert out.tolist() == np.asarray([t4[3]] * 4, dtype=str(out.dtype).replace("torch.", "")).tolist()  # the path's K
    assert I.verl_rewards(path, ["1", "1", "2", "5", "5", "5", "6"], list("aaabbbb")).tolist() == \
        [t3[1], t3[1], t3[0], t4[2], t4[2], t4[2], t4[0]]
    assert I.group_rewards(path, ["1", "1", "2", "3"]).tolist() == [t4[1], t4[1], t4[0], t4[0]]
    assert I.group_rewards(path, ["1", "1", "2"], group_size=3).tolist() == [t3[1], t3[1], t3[0]]
