"""Smoke version of the end-to-end experiment (examples/e2e_trl, `make e2e`): TRL's GRPOTrainer for a
few steps on the synthetic task with coefgen's default mean-baseline table; every reward TRL received
is R(prompt, answer) + β·log p_ref − β·t[c] (p_ref uniform), recomputed here with plain loops from the table file's JSON values."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "e2e_trl"
sys.path.insert(0, str(EXAMPLE))

import tables  # noqa: E402
import train  # noqa: E402
from task import Task  # noqa: E402

K, STEPS = 4, 3


def expected_rewards(call, task, t_values):
    """R + β·log(1/M) − β·t[c] for each completion, c = #{j in its group of K consecutive completions: same answer}."""
    comps = [c.strip() for c in call["completions"]]
    prompts = call["prompts"]
    assert len(comps) % K == 0
    out = []
    for i, a in enumerate(comps):
        g = range(i - i % K, i - i % K + K)
        assert len({prompts[j] for j in g}) == 1  # TRL's layout: K consecutive completions of one prompt
        c = sum(1 for j in g if comps[j] == a)
        R = task.R[task.prompts.index(prompts[i]), task.answers.index(a)]
        out.append(R + task.beta * math.log(1 / task.M) - task.beta * t_values[c - 1])  # p_ref uniform
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    task = Task.load()
    info = tables.build_tables([K], work / "tables", coefgen_bin=None, arms=("default",))["default"][K]
    run = train.train_one(task, K, info["path"], seed=0, steps=STEPS, lr=2e-3, every=1, record_rewards=True)
    return task, info, run


def test_rewards_are_composed_t_of_c_from_the_table_file(smoke):
    task, info, run = smoke
    payload = json.loads(Path(info["path"]).read_text())
    t_values = [float(v) for v in payload["values"]]
    assert payload["K"] == K and len(t_values) == K
    assert payload.get("baseline", "mean") == "mean"  # schema /2 states it: the table for a group-mean trainer
    calls = run["reward_calls"]
    assert len(calls) == STEPS
    seen_counts = set()
    for call in calls:
        assert len(call["completions"]) == task.P * K  # every prompt, K completions each
        assert set(call["prompts"]) == set(task.prompts)
        assert all(c.strip() in task.answers for c in call["completions"])  # generation restricted to answers
        want = expected_rewards(call, task, t_values)
        assert call["rewards"] == pytest.approx(want, rel=1e-12, abs=1e-12)
        seen_counts |= {round(r, 9) for r in call["rewards"]}
    assert len(seen_counts) >= 3  # several (answer, count) pairs occurred: the check is not vacuous


def test_kl_curve_is_exact_and_recorded_every_step(smoke):
    task, _, run = smoke
    curve = run["curve"]
    assert curve["steps"] == list(range(STEPS + 1))
    for p, kl in zip(curve["p"], curve["kl"]):
        p = np.asarray(p)
        assert p.shape == (task.P, task.M) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
        # KL(p || q) recomputed with a plain loop
        ref = [sum(pz * math.log(pz / qz) for pz, qz in zip(pr, qr) if pz > 0) for pr, qr in zip(p, task.q)]
        assert kl == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert curve["kl"][0] != curve["kl"][-1]  # the model moved


def test_the_task_target_is_the_kl_regularised_optimum():
    task = Task.load()
    # q ∝ exp(R/β): log q_z − R_z/β is the same for every answer of a prompt
    d = np.log(task.q) - task.R / task.beta
    assert np.allclose(d, d[:, :1], atol=1e-12)
    assert np.allclose(task.q.sum(axis=1), 1.0)
