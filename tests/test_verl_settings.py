"""coefgen.integrations.verl's pure pieces (no verl import): verl's advantage estimators → the
table baseline, answers as reward_extra_info strings, table families from sibling files, and
group rewards with each group's own size."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from coefgen.integrations.common import BaselineMismatch, resolve_family
from coefgen.integrations.verl import (answer_key, family_group_rewards, verl_baseline, verl_check_baseline,
                                       verl_group_scores, verl_padding_rows, verl_rewards)
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
    ("grpo_vectorized", False, "divides each group's advantages by the group's reward std"),  # the flag is not passed
    ("gae", True, "learned critic"),
    ("dr_grpo", False, "does not know"),  # verl 0.9.1's Dr.GRPO is grpo without the std
    ("remax", False, "greedy-rollout baseline"),
])
def test_estimators_refused(estimator, std, message):
    with pytest.raises(ValueError, match=message) as e:
        verl_baseline(estimator, std)
    assert "\n" not in str(e.value) and f"algorithm.adv_estimator={estimator}" in str(e.value)


def test_strict_baseline_match():
    """verl's check is common.check_baseline: the same messages as TRL/OpenRLHF, the same logging."""
    assert verl_check_baseline("loo", "rloo") == "loo"
    with pytest.raises(BaselineMismatch, match=r"^coefgen: verl uses a leave-one-out baseline \(algorithm.adv_estimator="
                                               r"rloo\) but the table is made for baseline 'mean'.*-loo-K<K>"):
        verl_check_baseline("mean", "rloo")
    with pytest.raises(BaselineMismatch, match=r"verl uses the group-mean baseline \(algorithm.adv_estimator=grpo with "
                                               r"algorithm.norm_adv_by_std_in_grpo=False\).*baseline 'none'"):
        verl_check_baseline("none", "grpo", False)
    key = "+trainer.v1.sampler.sampler_kwargs.coefgen_allow_std_normalization=true"
    with pytest.raises(BaselineMismatch, match=r"Fix: set algorithm.norm_adv_by_std_in_grpo=False.*; or set "
                                               + re.escape(key) + " to accept the bias$"):
        verl_check_baseline("mean", "grpo", True, opt_in="set " + key)


def test_allowed_std_normalization_logs_its_cost_once(caplog):
    from coefgen.integrations import common

    common._logged.discard(("verl", "algorithm.adv_estimator=grpo_vectorized (always divides by the group std)"))
    key = "+reward.reward_kwargs.coefgen_allow_std_normalization=true"
    with caplog.at_level("WARNING", logger="coefgen"):
        for _ in range(3):
            assert verl_check_baseline("mean", "grpo_vectorized", True, True, opt_in="set " + key) == "mean"
    costs = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert len(costs) == 1 and "with verl (algorithm.adv_estimator=grpo_vectorized" in costs[0]
    assert "only the sign of the cost difference survives" in costs[0]


def test_answer_key_follows_python_equality():
    assert answer_key(1) == answer_key(1.0) == answer_key(True) == answer_key(np.int64(1)) == answer_key(np.float32(1))
    assert answer_key(1) != answer_key("1")
    assert answer_key(0.5) == answer_key(np.float64(0.5)) != answer_key(0.25)
    assert answer_key((1, "a")) == answer_key((1.0, "a")) != answer_key(("1", "a"))
    assert answer_key(None) is None and answer_key(float("nan")) is None and answer_key(np.nan) is None
    assert all(isinstance(answer_key(a), str) for a in ("x", 3, 2.5, b"\x00", (1, 2), frozenset({1})))


def test_family_from_sibling_files():
    family = resolve_family(REPO / "tables" / f"{STEM}-K6.json")
    assert family.sizes == (2, 3, 4, 5, 6) and family.baseline == "none"
    for k in family.sizes:
        assert family.table_for(k).values.tolist() == file_values(k)


def test_group_rewards_with_each_groups_size():
    family = resolve_family(REPO / "tables" / f"{STEM}-K5.json")
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
    with pytest.raises(ValueError, match="group key 1 is nan: .*None and NaN are refused"):
        family_group_rewards(family, ["1", "1"], ["z", float("nan")])
    # NaN answers are no answer (singletons), like None; invalid_reward overrides both
    r, c, _ = family_group_rewards(family, [float("nan"), float("nan"), "1"], ["u"] * 3, invalid_reward=-1.0)
    assert r.tolist() == [-1.0, -1.0, file_values(3)[0]] and c.tolist() == [1, 1, 1]
    # keys compared as Python objects: 1 and "1" are two groups, 1 and 1.0 one
    _, _, sizes = family_group_rewards(family, ["a"] * 5, [1, "1", 1.0, "1", 1])
    assert sizes.tolist() == [3, 2, 3, 2, 3]


@pytest.mark.parametrize("as_array", [False, True])
def test_uids_follow_the_runtime_group_key_rule(as_array):
    """verl_rewards / verl_group_scores / verl_padding_rows key groups by runtime.group_codes: uids
    1 and "1" are two groups (never merged by numpy's string coercion), None / NaN uids refused."""
    family = resolve_family(REPO / "tables" / f"{STEM}-K4.json")
    uids = [1, "1", 1, "1", 1, "1", 1.0, "1"]
    answers = ["a", "a", "a", "b", "b", "b", "a", "b"]
    arr = np.empty(len(uids), dtype=object)
    arr[:] = uids
    u = arr if as_array else uids
    t4 = file_values(4)
    want = [t4[2], t4[0], t4[2], t4[2], t4[0], t4[2], t4[2], t4[2]]  # uid 1: a a b a; uid "1": a b b b
    assert verl_rewards(family, answers, u).tolist() == want
    rewards, counts = verl_group_scores(family, answers, u)
    assert rewards.tolist() == want and counts.tolist() == [3, 1, 3, 3, 1, 3, 3, 3]
    for bad in (None, float("nan"), np.nan):
        keys = np.array(["u", "u", bad, "u"], dtype=object) if as_array else ["u", "u", bad, "u"]
        with pytest.raises(ValueError, match=r"group key 2 is .*None and NaN are refused"):
            verl_rewards(family, ["a"] * 4, keys)
        with pytest.raises(ValueError, match=r"group key 2 is .*None and NaN are refused"):
            verl_group_scores(family, ["a"] * 4, keys)
    # padding detection: 1 and "1" are different uids, so a tail of "1" rows is not a copy of 1 rows
    rows = np.zeros((6, 2))
    assert verl_padding_rows([1, 1, 1, 1, "1", "1"], rows, 4) == 0
    assert verl_padding_rows([1, 1, 1, 1, 1, 1], rows, 4) == 2


def test_group_baseline_family_signal_free_groups(tmp_path):
    """Under loo/mean a group of 1 or 2 gets reward 0.0; a loo family re-sealed from the none tables."""
    for k in (3, 4):
        base = json.loads((REPO / "tables" / f"{STEM}-K{k - 1}.json").read_text())
        payload = dict(base, schema="coefgen.table/2", baseline="loo", K=k, values=base["values"] + base["values"][-1:],
                       values_exact=base["values_exact"] + base["values_exact"][-1:])
        (tmp_path / f"{STEM}-loo-K{k}.json").write_text(canonical_json(seal(payload)))
    family = resolve_family(tmp_path / f"{STEM}-loo-K4.json")
    assert family.sizes == (3, 4) and family.baseline == "loo"
    rewards, _ = verl_group_scores(family, ["1", "1", "2", "x", "y", "z", "z"], list("aaabbcc"))
    t3 = file_values(2) + file_values(2)[-1:]
    assert rewards.tolist() == [t3[1], t3[1], t3[0], 0.0, 0.0, 0.0, 0.0]
    assert not any(math.isnan(r) for r in rewards)
