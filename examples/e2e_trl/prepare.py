"""Phase 1 (compiler venv): the tables, the game's prediction, and the run list.

    python examples/e2e_trl/prepare.py WORKDIR [--K 4 8] [--seeds 5] [--steps 600] [--lr 1e-3]
                                       [--task FILE.json] [--beta B] [--game-lr 0.01,0.03]

writes WORKDIR/tables/<arm>-K<K>.json and WORKDIR/config.json (task, tables, runs, game).

The game (coefgen.game) in the same setting: the same target q, the same K, the same tables, the
trainer's baseline (group mean), one group of K samples per prompt per step, the same number of
steps and seeds. It models the policy as a free softmax over the answers of each prompt (not a
network), so its learning rate is not the trainer's: it is played at the rates given (Adam, like
the trainer), and its mean-field equilibrium (the long-run limit, no noise) is reported beside.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from task import Task  # noqa: E402
from tables import ARMS, build_tables  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def record_steps(steps: int, every: int) -> list[int]:
    return sorted(set([0] + list(range(every, steps + 1, every)) + [steps]))


def play_game(values, q, K, steps, every, seeds, lrs) -> dict:
    from coefgen import game

    values = np.asarray(values, dtype=float)
    mf = game.mean_field_equilibrium(values, q, "kl", baseline="mean")
    out = {"equilibrium": {"kl_mean": float(np.mean(mf.kl)), "kl_per_prompt": [float(x) for x in mf.kl],
                           "dead_answers": int(np.sum(mf.dead)), "p": np.round(mf.p, 6).tolist(),
                           "converged": bool(mf.converged)},
           "stochastic": {}}
    rec = record_steps(steps, every)
    for lr in lrs:
        curves = []
        for s in seeds:
            run = game.stochastic_run(values, q, steps=steps, lr=lr, baseline="mean", optimizer="adam", seed=s,
                                      record=rec)
            curves.append([float(x) for x in run.kl_mean])
        out["stochastic"][repr(lr)] = {"lr": lr, "optimizer": "adam", "baseline": "mean", "steps": rec,
                                       "kl_mean_per_seed": curves}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--K", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (model init and sampling)")
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed (other seeds: --seed-offset 100)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=2e-3, help="the trainer's AdamW learning rate (constant)")
    ap.add_argument("--every", type=int, default=10, help="measure KL every this many steps")
    ap.add_argument("--task", default=None, help='JSON {"rewards": [[...], ...], "beta": b} (default: the built-in task)')
    ap.add_argument("--beta", type=float, default=None, help="override the task's beta")
    ap.add_argument("--game-lr", default="0.03,0.1", help="the game's Adam learning rates (comma-separated)")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.05], help="KL levels for 'steps to reach'")
    ap.add_argument("--coefgen", default=str(REPO / ".venv" / "bin" / "coefgen"), help="the compiler venv's coefgen")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    a = ap.parse_args(argv)
    if min(a.K) < 3:
        ap.error("--K: a group-mean trainer needs K >= 3 (at K = 2 every table gives the same advantages)")
    if a.steps < 1 or a.seeds < 1 or a.every < 1:
        ap.error("--steps, --seeds and --every must be >= 1")
    task = Task.load(a.task, a.beta)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tabs = build_tables(a.K, work / "tables", a.coefgen, arms=a.arms)
    seeds = list(range(a.seed_offset, a.seed_offset + a.seeds))
    lrs = [float(x) for x in a.game_lr.split(",")]
    game = {arm: {str(K): play_game(tabs[arm][K]["values"], task.q, K, a.steps, a.every, seeds, lrs) for K in a.K}
            for arm in a.arms}
    # runs interleaved so that shards get a similar mix of K
    runs = [{"arm": arm, "K": K, "seed": s, "table": tabs[arm][K]["path"]}
            for s in seeds for K in a.K for arm in a.arms]
    cfg = {"task": task.to_json(), "K": a.K, "seeds": seeds, "steps": a.steps, "lr": a.lr, "every": a.every,
           "eps": a.eps, "arms": a.arms, "game_lrs": lrs,
           "tables": {arm: {str(K): v for K, v in d.items()} for arm, d in tabs.items()},
           "game": game, "runs": runs}
    (work / "config.json").write_text(json.dumps(cfg, indent=1))
    for arm in a.arms:
        eq = "  ".join(f"K={K}: {game[arm][str(K)]['equilibrium']['kl_mean']:.4f}" for K in a.K)
        print(f"e2e prepare: {arm:8s} game equilibrium KL  {eq}")
    print(f"e2e prepare: {len(runs)} trainer runs ({len(a.arms)} tables x K {a.K} x {len(seeds)} seeds)")


if __name__ == "__main__":
    main()
