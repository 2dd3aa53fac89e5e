"""Trainer integrations on inputs shaped like TRL's, verl's and OpenRLHF's (no trainer installed)."""

import re
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from coefgen import integrations as I
from coefgen.runtime import RewardTable

K = 4


@pytest.fixture
def table():
    # t_c = 10 c: the reward reveals the count directly
    return RewardTable({"K": K, "divergence": "kl", "estimator": "aqp", "sha256": "0" * 64,
                        "values": [10.0 * c for c in range(1, K + 1)]})


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


def test_trl_chat_completions_groups_of_num_generations(table):
    f = I.trl_reward_func(table, boxed)
    prompts = [[{"role": "user", "content": "2+2?"}]] * K + [[{"role": "user", "content": "3+3?"}]] * K
    answers = ["4", "4", "5", "4", "6", "7", "8", None]
    completions = [chat(a) for a in answers]
    out = f(prompts=prompts, completions=completions, completion_ids=[[1]] * 8, trainer_state=None)
    assert out == [30.0, 30.0, 10.0, 30.0, 10.0, 10.0, 10.0, 10.0]
    assert isinstance(out, list) and all(type(x) is float for x in out)
    assert f.__name__ == "coefgen_kl_aqp_K4"
    # plain-text completions, and a fixed reward for samples without an answer
    g = I.trl_reward_func(table, boxed, num_generations=K, invalid_reward=-1.0)
    texts = [c[0]["content"] for c in completions]
    assert g(["p"] * 4 + ["q"] * 4, texts) == [30.0, 30.0, 10.0, 30.0, 10.0, 10.0, 10.0, -1.0]


def test_trl_none_answers_do_not_match_each_other(table):
    f = I.trl_reward_func(table, boxed)
    assert f(["p"] * 4, [chat(None), chat(None), chat("1"), chat("1")]) == [10.0, 10.0, 20.0, 20.0]


def test_trl_refuses_partial_or_misaligned_groups(table):
    f = I.trl_reward_func(table, boxed)
    with pytest.raises(ValueError, match="gather"):
        f(["p"] * 6, [chat("1")] * 6)  # a process slice that splits a group
    with pytest.raises(ValueError, match="do not share one prompt"):
        f(["p", "p", "q", "q"] + ["r"] * 4, [chat("1")] * 8)
    with pytest.raises(ValueError, match="num_generations = 8"):
        I.trl_reward_func(table, boxed, num_generations=8)


def test_trl_gather_across_processes(table):
    """Two processes with 6 completions each; the middle group straddles them."""
    answers = ["a", "a", "b", "a", "x", "y", "x", "x", "c", "c", "c", "c"]
    full = I.group_rewards(table, answers)
    slices = {0: answers[:6], 1: answers[6:]}

    def make_gather(rank):
        def gather(local):
            assert local == slices[rank]
            return slices[0] + slices[1], 6 * rank
        return gather

    out = []
    for rank in (0, 1):
        f = I.trl_reward_func(table, boxed, gather=make_gather(rank))
        comps = [chat(a) for a in slices[rank]]
        out += f(prompts=None, completions=comps)
    assert out == full.tolist() == [30.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0, 30.0, 40.0, 40.0, 40.0, 40.0]


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


def test_openrlhf_reshaped_batches(table):
    ids = np.array([[0, 0, 1, 2], [5, 5, 5, 5], [1, 2, 1, 2]])
    assert I.openrlhf_rewards(table, ids).tolist() == [[20, 20, 10, 10], [40] * 4, [20] * 4]
    strs = [["x", "x", None, None], ["(1, 2)", "1,2", "(1, 2)", "z"]]
    assert I.openrlhf_rewards(table, strs).tolist() == [[20, 20, 10, 10], [20, 10, 20, 10]]
    with pytest.raises(ValueError, match="8 samples per prompt"):
        I.openrlhf_rewards(table, np.zeros((2, 8), dtype=int))
    f = I.openrlhf_reward_func(table, lambda s: s.strip().split()[-1])
    prompts = ["Q1:"] * 4 + ["Q2:"] * 4
    queries = [p + r for p, r in zip(prompts, [" a", " a", " b", " a", " c", " d", " e", " f"])]
    out = f(queries, prompts, labels=None)
    assert set(out) == {"rewards", "scores", "extra_logs"}  # what OpenRLHF reads from a reward_func
    assert np.asarray(out["rewards"]).tolist() == [30, 30, 10, 30, 10, 10, 10, 10]
    assert np.asarray(out["scores"]).tolist() == np.asarray(out["rewards"]).tolist()
    assert np.asarray(out["extra_logs"]["coefgen_count"]).tolist() == [3, 3, 1, 3, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="once per sample"):
        f(queries[:1], prompts[:1])  # OpenRLHF's per-sample call


def test_openrlhf_reward_func_refuses_to_load_in_openrlhf_per_sample_executor(table):
    """Created while OpenRLHF's openrlhf.utils.agent runs a --remote_rm_url file: a start-up error."""
    code = compile("make()", "reward_file.py", "exec")
    with pytest.raises(RuntimeError, match="once per sample.*--agent_func_path"):
        exec(code, {"__name__": "openrlhf.utils.agent", "make": lambda: I.openrlhf_reward_func(table, str)})
    I.openrlhf_reward_func(table, str)  # elsewhere it is created normally


def test_completion_text_forms():
    assert I.completion_text("plain") == "plain"
    assert I.completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert I.completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"},
                                                                {"type": "image"}, {"type": "text", "text": "y"}]}]) == "xy"


def test_loads_a_table_file(tmp_path, monkeypatch):
    from coefgen import __version__
    from coefgen.writers import render

    import coefgen.compiler

    payload = coefgen.compiler.compile_table("euclidean", 4, "exact", {})
    path = tmp_path / "t.json"
    path.write_bytes(render(payload, "json", __version__))
    f = I.trl_reward_func(str(path), boxed)
    # euclidean exact K=4: t_c = (c-1)/3 - 1
    assert f(["p"] * 4, [chat("1"), chat("1"), chat("1"), chat("2")]) == pytest.approx([-1 / 3] * 3 + [-1.0])


class FakeGRPOTrainer:
    """What a TRL 1.16 reward function can reach: log_metric/log_extra are bound methods of the trainer."""

    def __init__(self, num_generations, num_generations_eval=None, training=True):
        self.num_generations = num_generations
        self.num_generations_eval = num_generations_eval or num_generations
        self.model = SimpleNamespace(training=training)

    def _log_metric(self, name, value):
        pass

    def _log_completion_extra(self, column, values):
        pass

    def kwargs(self):
        return {"trainer_state": object(), "log_metric": self._log_metric, "log_extra": self._log_completion_extra}


def test_trl_group_size_from_the_trainer_catches_larger_groups_with_equal_prompts(table):
    f = I.trl_reward_func(table, boxed)
    prompts, comps = ["p"] * 8, [chat("1")] * 8  # one prompt, 8 completions: looks like two groups of 4
    assert f(prompts, comps) == [40.0] * 8  # without the trainer this is undetectable
    trainer = FakeGRPOTrainer(num_generations=8)
    with pytest.raises(ValueError) as e:
        f(prompts, comps, **trainer.kwargs())
    msg = str(e.value)
    assert "8 completions per prompt" in msg and "K = 4" in msg and "num_generations = 4" in msg
    assert "table built for K = 8" in msg
    assert f(prompts, comps, **FakeGRPOTrainer(num_generations=4).kwargs()) == [40.0] * 8


def test_trl_eval_group_size_is_num_generations_eval(table):
    f = I.trl_reward_func(table, boxed)
    ev = FakeGRPOTrainer(num_generations=4, num_generations_eval=2, training=False)
    with pytest.raises(ValueError, match=r"num_generations_eval = 2\) but the coefgen table is for K = 4"):
        f(["p", "p", "q", "q"], [chat("1")] * 4, **ev.kwargs())
    tr = FakeGRPOTrainer(num_generations=4, num_generations_eval=2, training=True)
    assert f(["p"] * 4, [chat("1")] * 4, **tr.kwargs()) == [40.0] * 4


def test_trl_smaller_groups_named_without_the_trainer(table):
    """num_generations = 2 with a K = 4 table: the message names both numbers, not gathering."""
    f = I.trl_reward_func(table, boxed)
    with pytest.raises(ValueError) as e:
        f(["p", "p", "q", "q", "r", "r", "s", "s"], [chat("1")] * 8)
    msg = str(e.value)
    assert "2 completions per prompt" in msg and "K = 4" in msg and "gather" not in msg
    with pytest.raises(ValueError, match="2 completions per prompt.*K = 4"):
        f(["p", "p", "q", "q", "r", "r"], [chat("1")] * 6)  # 6 is not a multiple of 4 either


def test_trl_partial_slice_message_with_the_trainer_says_gather(table):
    f = I.trl_reward_func(table, boxed)
    with pytest.raises(ValueError, match="splits a group; gather"):
        f(["p", "p", "q", "q", "q", "q"], [chat("1")] * 6, **FakeGRPOTrainer(4).kwargs())


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
