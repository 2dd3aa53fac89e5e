"""TRL 1.16 GRPOTrainer driven for real (tiny random Llama, char tokenizer, CPU) with coefgen's
reward function: every reward TRL receives is t[c] recomputed here; num_generations ≠ K refused."""

import re

import pytest
from conftest import expected_rewards, table_path, tiny_model

from coefgen.integrations import trl_reward_func

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

    def __call__(self, prompts=None, completions=None, **kwargs):
        out = self.f(prompts=prompts, completions=completions, **kwargs)
        self.calls.append({"prompts": list(prompts), "completions": list(completions), "rewards": list(out),
                           "keys": set(kwargs), "training": kwargs["log_metric"].__self__.model.training})
        return out


def make_trainer(tokenizer, tmp_path, K_table, chat=False, n_prompts=6, **config):
    from trl import GRPOConfig, GRPOTrainer

    texts = [f"{a}+{b}=?" for a, b in zip(range(n_prompts), range(3, 3 + n_prompts))]
    rows = [{"prompt": [{"role": "user", "content": t}] if chat else t} for t in texts]
    train = datasets.Dataset.from_list(rows)
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=2, learning_rate=1e-3, max_completion_length=3,
                    report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, bf16=False,
                    seed=0, temperature=1.0, dataloader_num_workers=0, disable_tqdm=True)
    defaults.update(config)
    args = GRPOConfig(**defaults)
    reward = Recorder(trl_reward_func(str(table_path(K_table)), first_char))
    trainer = GRPOTrainer(model=tiny_model(tokenizer), reward_funcs=[reward], args=args, train_dataset=train,
                          eval_dataset=train if defaults.get("eval_strategy", "no") != "no" else None,
                          processing_class=tokenizer)
    return trainer, reward


def check_calls(reward, K, n_expected_calls):
    assert len(reward.calls) >= n_expected_calls
    for call in reward.calls:
        n = len(call["completions"])
        assert n % K == 0 and {"trainer_state", "log_metric", "log_extra"} <= call["keys"]
        groups = [i // K for i in range(n)]
        for g in set(groups):  # TRL's layout: K consecutive completions of one prompt
            assert len({repr(call["prompts"][i]) for i in range(n) if groups[i] == g}) == 1
        answers = [first_char(c if isinstance(c, str) else c[-1]["content"]) for c in call["completions"]]
        assert call["rewards"] == pytest.approx(expected_rewards(answers, groups, K), abs=0, rel=0)
    return reward.calls


@pytest.mark.parametrize("K,config", [
    (4, dict(per_device_train_batch_size=4, num_generations=4)),
    (4, dict(per_device_train_batch_size=4, num_generations=4, gradient_accumulation_steps=2)),
    (8, dict(per_device_train_batch_size=8, num_generations=8, steps_per_generation=2)),
])
def test_grpo_two_steps_rewards_are_t_of_c(tokenizer, tmp_path, K, config):
    trainer, reward = make_trainer(tokenizer, tmp_path, K, **config)
    trainer.train()
    calls = check_calls(reward, K, 1)
    assert sum(len(c["completions"]) for c in calls) >= 2 * config["per_device_train_batch_size"]
    counts_seen = {r for c in calls for r in c["rewards"]}
    assert len(counts_seen) >= 2  # the random model's answers differ: several counts occur


def test_grpo_chat_prompts_and_evaluation(tokenizer, tmp_path):
    trainer, reward = make_trainer(tokenizer, tmp_path, 4, chat=True, per_device_train_batch_size=4,
                                   num_generations=4, per_device_eval_batch_size=4, eval_strategy="steps",
                                   eval_steps=2)
    trainer.train()
    calls = check_calls(reward, 4, 2)
    assert any(not c["training"] for c in calls) and any(c["training"] for c in calls)


@pytest.mark.parametrize("num_generations,batch", [(16, 16), (4, 8)])
def test_grpo_num_generations_other_than_K_is_refused(tokenizer, tmp_path, num_generations, batch):
    trainer, reward = make_trainer(tokenizer, tmp_path, 8, per_device_train_batch_size=batch,
                                   num_generations=num_generations)
    with pytest.raises(ValueError) as e:
        trainer.train()
    msg = str(e.value)
    assert f"{num_generations} completions per prompt (num_generations = {num_generations})" in msg
    assert "table is for K = 8" in msg and "GRPOConfig.num_generations = 8" in msg
    assert f"table built for K = {num_generations}" in msg and not re.search("gather", msg)
    assert reward.calls == []  # refused before any reward was returned


def test_grpo_num_generations_eval_other_than_K_is_refused(tokenizer, tmp_path):
    trainer, reward = make_trainer(tokenizer, tmp_path, 8, per_device_train_batch_size=8, num_generations=8,
                                   num_generations_eval=4, per_device_eval_batch_size=8, eval_strategy="no")
    trainer.eval_dataset = trainer.train_dataset
    with pytest.raises(ValueError, match=r"4 completions per prompt \(num_generations_eval = 4\).*K = 8"):
        trainer.evaluate(trainer.train_dataset)


def test_grpo_two_processes_with_gather(tmp_path):
    """Two CPU processes (torchrun, gloo); per-device batch 6 with K = 4, so a group
    straddles the processes; the README's gather makes every reward t[c] over whole groups."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import socket

    here = Path(__file__).resolve().parent
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as s:  # a free local port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           str(here / "two_process_grpo.py"), str(tmp_path), "4", "6"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    calls = [json.loads((tmp_path / f"calls{r}.json").read_text()) for r in (0, 1)]
    assert len(calls[0]) == len(calls[1]) >= 1
    for c0, c1 in zip(*calls):
        assert len(c0["completions"]) == len(c1["completions"]) == 6  # 12 = 3 groups of 4: one straddles
        prompts = c0["prompts"] + c1["prompts"]
        completions = c0["completions"] + c1["completions"]
        groups = [i // 4 for i in range(12)]
        assert all(len({prompts[i] for i in range(12) if groups[i] == g}) == 1 for g in range(3))
        answers = [first_char(c) for c in completions]
        assert c0["rewards"] + c1["rewards"] == pytest.approx(expected_rewards(answers, groups, 4), abs=0, rel=0)
