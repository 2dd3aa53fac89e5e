"""Run by test_trl.py under `torchrun --nproc_per_node 2` (CPU, gloo): GRPOTrainer on two
processes with coefgen's reward function and no gather argument (it gathers by itself); each
process writes what TRL passed and got back."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accelerate import PartialState  # noqa: E402
from conftest import char_tokenizer, tiny_model  # noqa: E402

from coefgen.integrations import check_trl_trainer, trl_reward_func  # noqa: E402


def main(out_dir, table, K, per_device):
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from test_trl import first_char

    inner = trl_reward_func(table, first_char, objective="consensus")
    calls = []

    def reward(prompts=None, completions=None, **kwargs):
        out = inner(prompts=prompts, completions=completions, **kwargs)
        calls.append({"prompts": [str(p) for p in prompts], "completions": list(completions), "rewards": out})
        return out

    reward.__name__ = inner.__name__
    tok = char_tokenizer()
    rows = [{"prompt": f"{a}+{a}=?"} for a in range(8)]
    args = GRPOConfig(output_dir=str(Path(out_dir) / "out"), max_steps=2, learning_rate=1e-3,
                      max_completion_length=3, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
                      seed=0, per_device_train_batch_size=per_device, num_generations=K, disable_tqdm=True,
                      scale_rewards="none")
    trainer = GRPOTrainer(model=tiny_model(tok), reward_funcs=[reward], args=args,
                          train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    check_trl_trainer(trainer, inner)
    trainer.train()
    rank = PartialState().process_index
    (Path(out_dir) / f"calls{rank}.json").write_text(json.dumps(calls))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
