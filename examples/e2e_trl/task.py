"""The synthetic answer-level task of the end-to-end experiment, shared by every phase.

P prompts (one token each: ``P0``, ``P1``, ...) and M answers (one token each: ``a0``, ``a1``, ...);
prompt i's task reward of answer z is R[i][z]. The objective is the answer-level KL-regularised one,

    max_pi  E_{z~pi}[R(z)] - beta * KL(pi || p_ref),   p_ref uniform over the M answers,

whose maximiser is q_i ∝ p_ref · exp(R_i / beta). Because every answer is one token and generation
is restricted to the M answer tokens, the model's answer distribution is exactly the softmax of its
next-token logits over the answer tokens: KL(pi_answers || q) is computed exactly, not sampled.

numpy only at import (torch/transformers are imported inside the functions that need them), so the
compiler venv (prepare/report) and the trainers venv (train) both import this module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# The default target: 4 prompts x 5 answers, beta = 0.5. Rows span a peaked target with a long tail
# (P0), ties (P1), one favourite among equals (P2) and two nearly-excluded answers (P3).
DEFAULT_TASK = {
    "beta": 0.5,
    "rewards": [
        [1.0, 0.5, 0.0, -0.5, -1.0],
        [1.0, 1.0, 0.0, 0.0, -1.0],
        [0.5, 0.0, 0.0, 0.0, 0.0],
        [1.0, 0.8, 0.6, -1.0, -2.0],
    ],
}

SPECIALS = ("<pad>", "<eos>", "<unk>")


class Task:
    """Prompts, answers, task rewards R (P, M), beta and the target q ∝ exp(R / beta) (p_ref uniform)."""

    def __init__(self, rewards, beta: float):
        R = np.asarray(rewards, dtype=float)
        if R.ndim != 2 or R.shape[0] < 1 or R.shape[1] < 2:
            raise ValueError(f"task rewards must be a (prompts, answers) matrix with >= 2 answers, got shape {R.shape}")
        if not np.all(np.isfinite(R)):
            raise ValueError("task rewards must be finite")
        beta = float(beta)
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be finite and > 0, got {beta}")
        self.R, self.beta = R, beta
        self.P, self.M = R.shape
        self.prompts = [f"P{i}" for i in range(self.P)]
        self.answers = [f"a{j}" for j in range(self.M)]
        self.log_p_ref = -math.log(self.M)  # uniform reference: a constant (it cancels under the group baseline)
        z = R / beta
        z = z - z.max(axis=1, keepdims=True)
        q = np.exp(z)
        self.q = q / q.sum(axis=1, keepdims=True)

    @classmethod
    def load(cls, path=None, beta=None) -> "Task":
        """The default task, or a JSON file {"rewards": [[...], ...], "beta": b}; ``beta`` overrides the file's."""
        spec = DEFAULT_TASK if path is None else json.loads(Path(path).read_text())
        if not isinstance(spec, dict) or "rewards" not in spec:
            raise ValueError(f"{path}: a task file is a JSON object with 'rewards' (a matrix) and 'beta'")
        return cls(spec["rewards"], spec.get("beta", 1.0) if beta is None else beta)

    def to_json(self) -> dict:
        return {"rewards": self.R.tolist(), "beta": self.beta, "prompts": self.prompts, "answers": self.answers,
                "target_q": self.q.tolist()}

    # ---- per-sample pieces the reward function uses

    def extract_answer(self, text: str):
        """The completion's answer: its (single) word if it is one of the answers, else None."""
        s = text.strip()
        return s if s in self._answer_index else None

    @property
    def _answer_index(self):
        return {a: j for j, a in enumerate(self.answers)}

    def task_reward(self, prompt, completion, answer=None, **_):
        """R(prompt, answer) of one sample, in the form coefgen's TRL integration calls it
        (``task_reward(prompt, completion_text, answer, **columns)``). 0.0 for a completion that is
        not an answer (cannot occur here: generation is restricted to the answer tokens)."""
        from coefgen.integrations.common import completion_text

        a = answer if answer is not None else self.extract_answer(completion_text(completion))
        if a is None:
            return 0.0
        i = self.prompts.index(prompt if isinstance(prompt, str) else completion_text(prompt))
        return float(self.R[i, self._answer_index[a]])

    def log_p_ref_of(self, answer) -> float:
        """log p_ref(answer): the uniform reference, -log M."""
        return self.log_p_ref

    # ---- model, tokenizer, exact KL

    def vocab(self) -> dict:
        words = list(SPECIALS) + self.prompts + self.answers
        return {w: i for i, w in enumerate(words)}

    def tokenizer(self):
        """A word-level PreTrainedTokenizerFast built in code (no downloads): specials, prompts, answers."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.WordLevel(self.vocab(), unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.WordPiece()
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                       unk_token="<unk>", bos_token="<eos>")

    def answer_token_ids(self) -> list[int]:
        v = self.vocab()
        return [v[a] for a in self.answers]

    def suppressed_token_ids(self) -> list[int]:
        """Every token that is not an answer: generation never samples them (GenerationConfig.suppress_tokens)."""
        keep = set(self.answer_token_ids())
        return [i for i in range(len(self.vocab())) if i not in keep]

    def model(self, seed: int, hidden: int = 16):
        """A tiny Llama with random weights (seeded), built from a config in code."""
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        v = self.vocab()
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=len(v), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8,
                             pad_token_id=v["<pad>"], eos_token_id=v["<eos>"], bos_token_id=v["<eos>"])
        return LlamaForCausalLM(config)

    def answer_probs(self, model) -> np.ndarray:
        """pi(z | prompt_i) exactly: the softmax over the answer tokens of the next-token logits (P, M).

        This is the distribution generation samples from (temperature 1, no top-k/top-p, the other
        tokens suppressed)."""
        import torch

        v = self.vocab()
        ids = torch.tensor([[v[p]] for p in self.prompts], device=model.device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, -1, :].double()
        model.train(was_training)
        return torch.softmax(logits[:, self.answer_token_ids()], dim=-1).cpu().numpy()


def kl_rows(p, q) -> np.ndarray:
    """KL(p_i || q_i) per row (0 log 0 = 0)."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=1)
