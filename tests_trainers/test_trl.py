"""TRL 1.16 GRPOTrainer and RLOOTrainer driven for real (tiny random Llama, char tokenizer, CPU) with
coefgen's reward function: GRPO's default scale_rewards="group" refused before any reward is
returned; scale_rewards="none" with a group-mean table, and RLOOTrainer with a leave-one-out
table, accepted, every reward TRL receives = the composed t[c] recomputed here from the table
file of the group's own size; num_generations outside the family refused; two processes
(torchrun, gloo) with a group straddling them and no hand-written gather."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import baseline_table, expected_rewards, file_values, tiny_model

from coefgen.integrations import BaselineMismatch, check_trl_trainer, trl_reward_func
from coefgen.runtime import TableFamily, load

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


def first_char(text):
    """The answer: the class of the completion's first character mod 3 (None if empty), so that
    a random model's answers collide and every count 1..K occurs."""
    s = text.strip()
    return ord(s[0]) % 3 if s else None


class Recorder:
    """Wraps the coefgen reward function; keeps what TRL passed and what it got back."""

    def __init__(self, f):
        self.f, self.calls = f, []
        self.__name__ = f.__name__
        self.coefgen_check = f.coefgen_check

    def __call__(self, prompts=None, completions=None, **kwargs):
        out = self.f(prompts=prompts, completions=completions, **kwargs)
        self.calls.append({"prompts": list(prompts), "completions": list(completions), "rewards": list(out),
                           "keys": set(kwargs), "training": kwargs["log_metric"].__self__.model.training})
        return out


def make_trainer(tokenizer, tmp_path, table, trainer="grpo", chat=False, n_prompts=6, reward_kwargs=None, **config):
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    texts = [f"{a}+{b}=?" for a, b in zip(range(n_prompts), range(3, 3 + n_prompts))]
    rows = [{"prompt": [{"role": "user", "content": t}] if chat else t, "solution": str(i % 3)}
            for i, t in enumerate(texts)]
    train = datasets.Dataset.from_list(rows)
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=2, learning_rate=1e-3, max_completion_length=3,
                    report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, bf16=False,
                    seed=0, temperature=1.0, dataloader_num_workers=0, disable_tqdm=True)
    defaults.update(config)
    Config, Trainer = (GRPOConfig, GRPOTrainer) if trainer == "grpo" else (RLOOConfig, RLOOTrainer)
    args = Config(**defaults)
    reward = Recorder(trl_reward_func(table, first_char, **(reward_kwargs or {"objective": "consensus"})))
    t = Trainer(model=tiny_model(tokenizer), reward_funcs=[reward], args=args, train_dataset=train,
                eval_dataset=train if defaults.get("eval_strategy", "no") != "no" else None,
                processing_class=tokenizer)
    return t, reward


def check_calls(reward, values, n_expected_calls, compose=None):
    """Every call: TRL's layout (groups of consecutive completions of one prompt) and rewards =
    compose(t_k[c]) with t_k read from the file of the group's size k."""
    assert len(reward.calls) >= n_expected_calls
    for call in reward.calls:
        n = len(call["completions"])
        sizes = [k for k in values if n % k == 0]
        k = max(sizes) if call["training"] else min(sizes)
        assert {"trainer_state", "log_metric", "log_extra"} <= call["keys"]
        groups = [i // k for i in range(n)]
        for g in set(groups):
            assert len({repr(call["prompts"][i]) for i in range(n) if groups[i] == g}) == 1
        answers = [first_char(c if isinstance(c, str) else c[-1]["content"]) for c in call["completions"]]
        t = expected_rewards(answers, groups, k, values)
        want = t if compose is None else [compose(x, a) for x, a in zip(t, answers)]
        assert call["rewards"] == pytest.approx(want, abs=0, rel=0)
    return reward.calls


def test_grpo_default_scale_rewards_is_refused_before_any_reward(tokenizer, tmp_path):
    table = baseline_table(tmp_path, 4, "mean")
    trainer, reward = make_trainer(tokenizer, tmp_path, str(table), per_device_train_batch_size=4, num_generations=4)
    assert trainer.scale_rewards == "group"  # TRL's default
    with pytest.raises(BaselineMismatch) as early:
        check_trl_trainer(trainer)  # before training
    with pytest.raises(BaselineMismatch) as e:
        trainer.train()
    msg = str(e.value)
    assert msg == str(early.value) and "\n" not in msg
    assert "scale_rewards='group' (the default)" in msg and 'scale_rewards="none"' in msg
    assert "allow_std_normalization=True" in msg
    assert reward.calls == []  # no reward was ever returned


def test_grpo_scale_rewards_none_with_a_mean_table_rewards_are_t_of_c(tokenizer, tmp_path):
    table = baseline_table(tmp_path, 4, "mean")
    trainer, reward = make_trainer(tokenizer, tmp_path, str(table), per_device_train_batch_size=4, num_generations=4,
                                   gradient_accumulation_steps=2, scale_rewards="none")
    check_trl_trainer(trainer)
    trainer.train()
    calls = check_calls(reward, {4: file_values(table)}, 1)
    assert sum(len(c["completions"]) for c in calls) >= 8
    assert len({r for c in calls for r in c["rewards"]}) >= 2  # several counts occur


def test_grpo_none_table_refused_names_the_mean_table(tokenizer, tmp_path):
    from conftest import table_path

    trainer, reward = make_trainer(tokenizer, tmp_path, str(table_path(4)), per_device_train_batch_size=4,
                                   num_generations=4, scale_rewards="batch")
    with pytest.raises(BaselineMismatch, match=r"group-mean baseline \(GRPOConfig.scale_rewards='batch'\) but the "
                                               r"table is made for baseline 'none': load the table with baseline 'mean'"):
        trainer.train()
    assert reward.calls == []


def test_grpo_family_eval_groups_scored_with_their_own_size_and_composition(tokenizer, tmp_path):
    """num_generations = 4 in training, num_generations_eval = 3 in evaluation: one family; the
    reward is the entropy-bonus composition with a task reward from the dataset's column."""
    t3, t4 = baseline_table(tmp_path, 3, "mean"), baseline_table(tmp_path, 4, "mean")
    family = TableFamily([load(t3), load(t4)])
    beta = 0.25

    def correct(prompt, completion, answer, solution, **kw):
        return float(str(answer) == solution)

    trainer, reward = make_trainer(tokenizer, tmp_path, family, chat=True, per_device_train_batch_size=4,
                                   num_generations=4, num_generations_eval=3, per_device_eval_batch_size=3,
                                   eval_strategy="steps", eval_steps=2, scale_rewards="none",
                                   reward_kwargs=dict(objective="entropy_bonus", beta=beta, task_reward=correct))
    trainer.train()
    assert any(not c["training"] for c in reward.calls) and any(c["training"] for c in reward.calls)
    # rewards recomputed: R from the prompts' solutions (prompt i has solution i % 3), t from the files
    solution_of = {f"{a}+{b}=?": str(i % 3) for i, (a, b) in enumerate(zip(range(6), range(3, 9)))}
    for call in reward.calls:
        n = len(call["completions"])
        k = 4 if call["training"] else 3
        groups = [i // k for i in range(n)]
        answers = [first_char(c[-1]["content"]) for c in call["completions"]]
        t = expected_rewards(answers, groups, k, {3: file_values(t3), 4: file_values(t4)})
        R = [float(str(a) == solution_of[p[-1]["content"]]) for a, p in zip(answers, call["prompts"])]
        assert call["rewards"] == pytest.approx([r - beta * x for r, x in zip(R, t)], abs=0, rel=0)


def test_grpo_num_generations_outside_the_family_is_refused(tokenizer, tmp_path):
    table = baseline_table(tmp_path, 8, "mean")
    trainer, reward = make_trainer(tokenizer, tmp_path, str(table), per_device_train_batch_size=4,
                                   num_generations=4, scale_rewards="none")
    with pytest.raises(ValueError) as e:
        trainer.train()
    msg = str(e.value)
    assert "4 completions per prompt (num_generations = 4)" in msg and "no table for 4 (sizes 8)" in msg
    assert reward.calls == []


def test_rloo_with_a_loo_table_rewards_are_t_of_c_and_a_mean_table_refused(tokenizer, tmp_path):
    loo = baseline_table(tmp_path, 4, "loo")
    trainer, reward = make_trainer(tokenizer, tmp_path, str(loo), trainer="rloo", per_device_train_batch_size=4,
                                   num_generations=4, beta=0.0)  # beta = 0: no reference model to load
    trainer.train()
    check_calls(reward, {4: file_values(loo)}, 1)
    mean = baseline_table(tmp_path, 4, "mean")
    trainer, reward = make_trainer(tokenizer, tmp_path, str(mean), trainer="rloo", per_device_train_batch_size=4,
                                   num_generations=4, beta=0.0)  # beta = 0: no reference model to load
    with pytest.raises(BaselineMismatch, match="TRL RLOOTrainer uses a leave-one-out baseline .* load the table with "
                                               "baseline 'loo'"):
        trainer.train()
    assert reward.calls == []


def test_grpo_two_processes_without_a_gather(tmp_path):
    """Two CPU processes (torchrun, gloo); per-device batch 6 with K = 4, so a group straddles
    the processes; no gather argument: the reward function gathers by itself."""
    here = Path(__file__).resolve().parent
    table = baseline_table(tmp_path, 4, "mean")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as s:  # a free local port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(here / "two_process_grpo.py"), str(tmp_path), str(table), "4", "6"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    calls = [json.loads((tmp_path / f"calls{r}.json").read_text()) for r in (0, 1)]
    assert len(calls[0]) == len(calls[1]) >= 1
    values = {4: file_values(table)}
    for c0, c1 in zip(*calls):
        assert len(c0["completions"]) == len(c1["completions"]) == 6  # 12 = 3 groups of 4: one straddles
        prompts = c0["prompts"] + c1["prompts"]
        completions = c0["completions"] + c1["completions"]
        groups = [i // 4 for i in range(12)]
        assert all(len({prompts[i] for i in range(12) if groups[i] == g}) == 1 for g in range(3))
        assert prompts[4:6] == prompts[6:8]  # the middle group is split between the processes
        answers = [first_char(c) for c in completions]
        assert c0["rewards"] + c1["rewards"] == pytest.approx(expected_rewards(answers, groups, 4, values), abs=0, rel=0)


def test_grpo_default_scale_rewards_accepted_with_the_opt_in_which_logs_its_cost_once(tokenizer, tmp_path, caplog):
    import coefgen.integrations.common as common

    common._logged.clear()
    table = baseline_table(tmp_path, 4, "mean")
    trainer, reward = make_trainer(tokenizer, tmp_path, str(table), per_device_train_batch_size=4, num_generations=4,
                                   reward_kwargs=dict(objective="consensus", allow_std_normalization=True))
    with caplog.at_level("WARNING", logger="coefgen"):
        trainer.train()
    check_calls(reward, {4: file_values(table)}, 2)
    costs = [r for r in caplog.records if "allow_std_normalization=True" in r.getMessage()]
    assert len(costs) == 1 and "scale_rewards='group'" in costs[0].getMessage()
