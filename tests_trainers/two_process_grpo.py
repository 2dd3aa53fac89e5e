"""Run by test_trl.py under `torchrun --nproc_per_node 2` (CPU, gloo): GRPOTrainer on two
processes with the README's gather; each process writes what TRL passed and got back."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accelerate import PartialState  # noqa: E402
from accelerate.utils import gather_object  # noqa: E402
from conftest import char_tokenizer, table_path, tiny_model  # noqa: E402

from coefgen.integrations import trl_reward_func  # noqa: E402


def gather(local):  # as in the README
    sizes = gather_object([len(local)])
    return gather_object(local), sum(sizes[:PartialState().process_index])


def main(out_dir, K, per_device):
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from test_trl import first_char

    inner = trl_reward_func(str(table_path(K)), first_char, gather=gather)
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
                      seed=0, per_device_train_batch_size=per_device, num_generations=K, disable_tqdm=True)
    trainer = GRPOTrainer(model=tiny_model(tok), reward_funcs=[reward], args=args,
                          train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    rank = PartialState().process_index
    (Path(out_dir) / f"calls{rank}.json").write_text(json.dumps(calls))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
