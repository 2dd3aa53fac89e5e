"""Shared pieces of the trainer tests: a character tokenizer and a tiny random model, built in
code (no hub downloads), and the repo's committed tables read independently of coefgen."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
CHARS = "0123456789+=?abx "


def table_path(K: int) -> Path:
    """The default set's kl aqp table for group size K (whatever its parameters are named)."""
    found = sorted((REPO / "tables").glob(f"kl-aqp-*K{K}.json")) + sorted((REPO / "tables").glob(f"kl-aqp-K{K}.json"))
    assert len(found) == 1, f"expected one default kl aqp table for K = {K} in tables/, found {found}"
    return found[0]


def table_values(K: int) -> list[float]:
    """t[1..K] read straight from the JSON file (not through coefgen)."""
    payload = json.loads(table_path(K).read_text())
    assert payload["K"] == K and len(payload["values"]) == K
    return [float(v) for v in payload["values"]]


def expected_rewards(answers, group_ids, K, values=None):
    """t[c_i] recomputed with plain loops: c_i = #{j in i's group: answer_j == answer_i}, None matches
    nothing. ``values``: {group size: t[1..k]} read from the table files (default: tables/ at K)."""
    values = values or {K: table_values(K)}
    out = []
    for i, (a, g) in enumerate(zip(answers, group_ids)):
        members = [j for j, h in enumerate(group_ids) if h == g]
        assert len(members) in values, f"group {g!r} has {len(members)} samples, tables for {sorted(values)}"
        c = 1 if a is None else sum(1 for j in members if answers[j] == a)
        out.append(values[len(members)][c - 1])
    return out


def baseline_table(directory, K: int, baseline: str) -> Path:
    """A loo/mean table file for group size K made from the committed no-baseline kl table at K - 1
    (t_1..t_{K-1} = that table, t_K = t_{K-1}, schema coefgen.table/2, re-sealed), as the compiler
    will make them; written into ``directory``."""
    from coefgen.payload import SCHEMA, seal

    p = json.loads(table_path(K - 1).read_text())
    p.update(schema=SCHEMA, K=K, baseline=baseline, values=p["values"] + p["values"][-1:],
             values_exact=p["values_exact"] + p["values_exact"][-1:],
             table_id=p["table_id"].replace(f"-K{K - 1}", f"-{baseline}-K{K}"))
    path = Path(directory) / (p["table_id"] + ".json")
    path.write_text(json.dumps(seal(p), sort_keys=True, indent=2) + "\n")
    return path


def file_values(path) -> list[float]:
    """t[1..K] read straight from a table file's JSON."""
    return [float(v) for v in json.loads(Path(path).read_text())["values"]]


def char_tokenizer(tmp_path=None):
    """A PreTrainedTokenizerFast with one token per character of CHARS (+ pad/eos/unk)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                 bos_token="<eos>")
    hf.chat_template = ("{% for m in messages %}{{ m['content'] }}{% if not loop.last %} {% endif %}{% endfor %}"
                        "{% if add_generation_prompt %}={% endif %}")
    if tmp_path is not None:
        hf.save_pretrained(tmp_path)
    return hf


def tiny_model(tokenizer, seed=0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    return LlamaForCausalLM(config)


@pytest.fixture
def tokenizer():
    return char_tokenizer()
