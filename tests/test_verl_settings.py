"""coefgen.integrations.verl's pure pieces (no verl import): verl's advantage estimators → the
table baseline, answers as reward_extra_info strings, table families from sibling files, and
group rewards with each group's own size."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from coefgen.integrations.verl import (answer_key, family_from_table, family_group_rewards, verl_baseline,
                                       verl_check_baseline, verl_group_scores)
from coefgen.payload import canonical_json, seal

REPO = Path(__file__).resolve().parents[1]
STEM = "kl-aqp-gamma0.75-max_mse4plugin"


def file_values(k, folder=REPO / "tables", stem=STEM):
    return [float(v) for v in json.loads((folder / f"{stem}-K{k}.json").read_text())["values"]]


@pytest.mark.parametrize("estimator,std,allow,baseline", [
    ("grpo", False, False, "mean"),
    ("grpo", True, True, "mean"),
    ("grpo_vectorized", False, True, "mean"),
    ("rloo", True, False, "loo"),
    ("rloo_vectorized", True, False, "loo"),
    ("reinforce_plus_plus_baseline", True, False, "mean"),
])
def test_estimator_baselines(estimator, std, allow, baseline):
    assert verl_baseline(estimator, std, allow) == baseline


@pytest.mark.parametrize("estimator,std,message", [
    ("grpo", True, "norm_adv_by_std_in_grpo=False"),
    ("grpo_vectorized", False, "divides each group's advantages by the group's std"),  # the flag is not passed
    ("gae", True, "learned critic"),
    ("dr_grpo", False, "does not know"),  # verl 0.9.1's Dr.GRPO is grpo without the std
    ("remax", False, "greedy-rollout baseline"),
])
def test_estimators_refused(estimator, std, message):
    with pytest.raises(ValueError, match=message) as e:
        verl_baseline(estimator, std)
    assert "\n" not in str(e.value) and f"algorithm.adv_estimator={estimator}" in str(e.value)


def test_strict_baseline_match():
    assert verl_check_baseline("loo", "rloo") == "loo"
    with pytest.raises(ValueError, match=r"rloo subtracts the leave-one-out .*baseline 'mean'.*-loo-K<k>"):
        verl_check_baseline("mean", "rloo")
    with pytest.raises(ValueError, match=r"grpo subtracts the group mean .*baseline 'none'"):
        verl_check_baseline("none", "grpo", False)


def test_answer_key_follows_python_equality():
    assert answer_key(1) == answer_key(1.0) == answer_key(True) == answer_key(np.int64(1)) == answer_key(np.float32(1))
    assert answer_key(1) != answer_key("1")
    assert answer_key(0.5) == answer_key(np.float64(0.5)) != answer_key(0.25)
    assert answer_key((1, "a")) == answer_key((1.0, "a")) != answer_key(("1", "a"))
    assert answer_key(None) is None and answer_key(float("nan")) is None and answer_key(np.nan) is None
    assert all(isinstance(answer_key(a), str) for a in ("x", 3, 2.5, b"\x00", (1, 2), frozenset({1})))


def test_family_from_sibling_files():
    family = family_from_table(REPO / "tables" / f"{STEM}-K6.json")
    assert family.sizes == (2, 3, 4, 5, 6) and family.baseline == "none"
    for k in family.sizes:
        assert family.table_for(k).values.tolist() == file_values(k)


def test_group_rewards_with_each_groups_size():
    family = family_from_table(REPO / "tables" / f"{STEM}-K5.json")
    rng = np.random.default_rng(0)
    groups = {"a": 5, "b": 4, "c": 3, "d": 2}  # sessions lost: b one, c two, d three
    samples = [(g, str(rng.integers(0, 3)) if rng.random() < 0.8 else None) for g, k in groups.items()
               for _ in range(k)]
    order = rng.permutation(len(samples))
    samples = [samples[i] for i in order]
    answers, uids = [a for _, a in samples], [g for g, _ in samples]
    rewards, counts, sizes = family_group_rewards(family, answers, uids)
    for i, (g, a) in enumerate(samples):  # plain loops over the files
        members = [j for j, h in enumerate(uids) if h == g]
        c = 1 if a is None else sum(answers[j] == a for j in members)
        assert (counts[i], sizes[i]) == (c, len(members))
        assert rewards[i] == file_values(len(members))[c - 1]
    with pytest.raises(ValueError, match=r"a group has 6 samples .*sizes 2, 3, 4, 5"):
        family_group_rewards(family, ["1"] * 6, ["z"] * 6)
    with pytest.raises(ValueError, match="group key is None or NaN"):
        family_group_rewards(family, ["1", "1"], ["z", float("nan")])
    # NaN answers are no answer (singletons), like None; invalid_reward overrides both
    r, c, _ = family_group_rewards(family, [float("nan"), float("nan"), "1"], ["u"] * 3, invalid_reward=-1.0)
    assert r.tolist() == [-1.0, -1.0, file_values(3)[0]] and c.tolist() == [1, 1, 1]
    # keys compared as Python objects: 1 and "1" are two groups, 1 and 1.0 one
    _, _, sizes = family_group_rewards(family, ["a"] * 5, [1, "1", 1.0, "1", 1])
    assert sizes.tolist() == [3, 2, 3, 2, 3]


def test_group_baseline_family_signal_free_groups(tmp_path):
    """Under loo/mean a group of 1 or 2 gets reward 0.0; a loo family re-sealed from the none tables."""
    for k in (3, 4):
        base = json.loads((REPO / "tables" / f"{STEM}-K{k - 1}.json").read_text())
        payload = dict(base, schema="coefgen.table/2", baseline="loo", K=k, values=base["values"] + base["values"][-1:],
                       values_exact=base["values_exact"] + base["values_exact"][-1:])
        (tmp_path / f"{STEM}-loo-K{k}.json").write_text(canonical_json(seal(payload)))
    family = family_from_table(tmp_path / f"{STEM}-loo-K4.json")
    assert family.sizes == (3, 4) and family.baseline == "loo"
    rewards, _ = verl_group_scores(family, ["1", "1", "2", "x", "y", "z", "z"], list("aaabbcc"))
    t3 = file_values(2) + file_values(2)[-1:]
    assert rewards.tolist() == [t3[1], t3[1], t3[0], 0.0, 0.0, 0.0, 0.0]
    assert not any(math.isnan(r) for r in rewards)
