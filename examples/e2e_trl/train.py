"""Phase 2 (trainers venv): TRL GRPOTrainer runs, one per (table, K, seed); KL(pi_answers || q) against step.

    python examples/e2e_trl/train.py WORKDIR [--shard I/N]

reads WORKDIR/config.json (written by prepare.py) and writes WORKDIR/runs/<arm>-K<K>-s<seed>.json.
Every run: a tiny random Llama (seeded: the same initial model for every table at one seed), TRL's
GRPOTrainer with the settings coefgen recommends for it (scale_rewards="none": group-mean baseline,
no std normalisation), num_generations = K, one step = every prompt once with K completions of one
token, AdamW at a constant learning rate, TRL's own KL penalty off (beta = 0.0: the KL regularisation
is the answer-level one, inside the composed reward). The reward of each completion is
R + beta*log p_ref - beta*t[c] from coefgen's TRL integration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
               ("WANDB_DISABLED", "true"), ("TOKENIZERS_PARALLELISM", "false"), ("OMP_NUM_THREADS", "1")):
    os.environ.setdefault(_k, _v)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from task import Task, kl_rows  # noqa: E402


class Recorder:
    """Wraps a reward function; keeps what TRL passed to it and what it returned."""

    def __init__(self, f):
        self.f, self.calls = f, []
        self.__name__ = f.__name__

    def __call__(self, prompts=None, completions=None, **kwargs):
        out = self.f(prompts=prompts, completions=completions, **kwargs)
        self.calls.append({"prompts": list(prompts), "completions": [str(c) for c in completions],
                           "rewards": [float(r) for r in out]})
        return out


def reward_function(task: Task, K: int, table_path):
    """R + beta*log p_ref - beta*t[c] per completion, from coefgen's TRL integration (p_ref uniform:
    log p_ref = -log M for every answer, a constant that the group-mean baseline removes)."""
    from coefgen.integrations import trl_reward_func

    return trl_reward_func(str(table_path), task.extract_answer, num_generations=K, objective="kl_regularized",
                           beta=task.beta, task_reward=task.task_reward, log_p_ref=task.log_p_ref_of)


def record_steps(steps: int, every: int) -> list[int]:
    return sorted(set([0] + list(range(every, steps + 1, every)) + [steps]))


def train_one(task: Task, K: int, table_path, seed: int, steps: int, lr: float, every: int = 10,
              record_rewards: bool = False, hidden: int = 16) -> dict:
    """One GRPOTrainer run; returns the KL curve (exact, per prompt) and, if asked, every reward call."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    wanted = set(record_steps(steps, every))
    curve = {"steps": [], "kl": [], "p": []}

    def measure(model, step):
        p = task.answer_probs(model)
        curve["steps"].append(int(step))
        curve["kl"].append(kl_rows(p, task.q).tolist())
        curve["p"].append(np.round(p, 6).tolist())

    class KLCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            measure(model, 0)

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step in wanted:
                measure(model, state.global_step)

    reward = Recorder(reward_function(task, K, table_path))
    model = task.model(seed, hidden=hidden)
    with tempfile.TemporaryDirectory(prefix="coefgen-e2e-") as tmp:
        args = GRPOConfig(
            output_dir=tmp, max_steps=steps, learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0,
            per_device_train_batch_size=task.P * K, num_generations=K, max_completion_length=1,
            scale_rewards="none", beta=0.0, temperature=1.0, top_p=1.0, top_k=0,
            mask_truncated_completions=False, generation_kwargs={"suppress_tokens": task.suppressed_token_ids()},
            report_to="none", save_strategy="no", logging_steps=max(steps, 1), disable_tqdm=True,
            use_cpu=True, bf16=False, seed=seed, data_seed=seed, dataloader_num_workers=0,
        )
        train = Dataset.from_list([{"prompt": p} for p in task.prompts])
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=train,
                              processing_class=task.tokenizer(), callbacks=[KLCallback()])
        trainer.remove_callback(PrinterCallback)  # the run's own line replaces the logged dicts
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    out = {"K": K, "seed": seed, "steps": steps, "lr": lr, "table": str(table_path), "wall_s": wall,
           "curve": curve,
           "n_reward_calls": len(reward.calls)}
    if record_rewards:
        out["reward_calls"] = reward.calls
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--shard", default="0/1", help="I/N: run every N-th run starting at I")
    a = ap.parse_args(argv)
    work = Path(a.workdir)
    cfg = json.loads((work / "config.json").read_text())
    i, n = (int(x) for x in a.shard.split("/"))
    task = Task(cfg["task"]["rewards"], cfg["task"]["beta"])
    runs_dir = work / "runs"
    runs_dir.mkdir(exist_ok=True)
    todo = cfg["runs"][i::n]
    for r in todo:
        out = runs_dir / f"{r['arm']}-K{r['K']}-s{r['seed']}.json"
        if out.exists():
            continue
        res = train_one(task, r["K"], r["table"], r["seed"], cfg["steps"], cfg["lr"], cfg["every"],
                        hidden=cfg.get("hidden", 16))
        res["arm"] = r["arm"]
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res))
        tmp.replace(out)
        kl = np.mean(res["curve"]["kl"][-1])
        print(f"e2e train [{a.shard}]: {r['arm']:8s} K={r['K']} seed={r['seed']} final KL {kl:.4f}  "
              f"({res['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
