"""Best-of-n against a discrete reference (DESIGN §11; Beirami et al. 2024). Pure functions.

Best-of-n draws n outcomes from π_ref and keeps one with the highest reward; ties among the
top draws are broken uniformly at random. Order the distinct rewards (tie classes C) and let
F(C) = P_ref(reward ≤ r_C), F_<(C) = P_ref(reward < r_C), q_C = π_ref(C). Then

    π_n(C) = F(C)^n − F_<(C)^n,     π_n(y) = π_n(C) · π_ref(y) / q_C   (y ∈ C),

because the n draws' maximum lands in C with that probability, and a uniform tie-break picks
each of the top draws with equal chance, so within C the choice is distributed like π_ref.

    KL(π_n‖π_ref) = Σ_C π_n(C) log(π_n(C)/q_C)            ≤ log n − (n−1)/n
    win rate      = Σ_C π_n(C) (F_<(C) + q_C/2)            ≤ n/(n+1)   (a tie counts ½)
    KL̂(ε)        = (1−ε)^n [log n + (n−1) log(1−ε) − (n−1)/n] + (1 − (1−ε)^n) log((1 − (1−ε)^n)/ε)

(the paper's estimator, ε = π_ref(y) of the selected output y).

Precision. F, 1 − F, q_C and π_ref(y) are exact sums of the input floats (Python integers),
divided by the exact total and correctly rounded, so each has relative error ≤ 2^-53 whatever
N is. π_n(C) = exp(n·log F) · (−expm1(n·log(F_</F))) with log F = log1p(−(1 − F)) and
log(F_</F) = log1p(−q/F): no difference of nearly equal numbers is ever formed. The relative
error of π_n(C) is ≲ (n·|log F| + 10)·2^-53, which is ≤ 2e-13 wherever π_n(C) ≥ 1e-300
(there n·|log F| ≤ 691); KL and the win rate carry absolute errors of the same order
(checked against a 50-digit mpmath evaluation in tests/test_bon.py).

Quantile rewards (BOND, vBoN): for a policy sample y and k reference samples y′_j,
c = 1 + #{j : r(y′_j) ≤ r(y)} has c − 1 ~ Bin(k, p_≤(y)), p_≤(y) = F(y); so a coefgen table
of K = k + 1 maps c to an estimate of r(p_≤(y)) (log p_≤(y) for a kl table) with the
table's certified bias. ``bon_quantile_rewards`` does this for a batch of prompts.

numpy only at import (mpmath and the runtime are imported where used).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from .errors import InputError
from .spec_numbers import show, spec_number

MAX_OUTCOMES = 1_000_000  # N: outcomes of a reference
MAX_N = 10**9  # n: draws of best-of-n
MAX_SWEEP_VALUES = 100_000  # how many n one sweep may hold
MAX_SWEEP_WORK = 2 * 10**8  # (number of n) × (number of outcomes) in one sweep
_ASCII_INT = re.compile(r"[+-]?[0-9]{1,12}", re.ASCII)  # int() also takes non-ASCII digits
SUM_TOL = 1e-9  # |Σ probs − 1|

__all__ = [
    "BonReference", "prepare_reference", "check_reference", "reference_family", "parse_n",
    "kl_bound", "win_rate_bound", "kl_estimator", "bon_class_log_probs", "bon_probs",
    "bon_sweep", "bon_per_output", "bon_probs_mp", "bon_quantile_counts", "bon_quantile_rewards",
    "expected_estimate", "clamped_plugin_table", "rank_plugin_table", "vbon_equilibrium_kl",
    "MAX_OUTCOMES", "MAX_N", "MAX_SWEEP_VALUES", "MAX_SWEEP_WORK",
]


# --------------------------------------------------------------------------- references

def check_reference(probs, rewards) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 (probs, rewards); InputError with a one-line reason otherwise."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    r = np.asarray(rewards, dtype=np.float64).ravel()
    if p.size != r.size:
        raise InputError(f"reference has {p.size} probabilities but {r.size} rewards: lengths must match")
    if p.size == 0:
        raise InputError("reference is empty: give at least one outcome")
    if p.size > MAX_OUTCOMES:
        raise InputError(f"reference has {p.size} outcomes, above the cap MAX_OUTCOMES = {MAX_OUTCOMES}")
    bad = ~np.isfinite(p)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"probability {i} (0-based) is {p[i]}: probabilities must be finite")
    if (p < 0).any():
        i = int(np.flatnonzero(p < 0)[0])
        raise InputError(f"probability {i} (0-based) is negative ({p[i]!r})")
    bad = ~np.isfinite(r)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"reward {i} (0-based) is {r[i]}: rewards must be finite numbers")
    total = math.fsum(p.tolist())
    if not abs(total - 1.0) <= SUM_TOL:
        raise InputError(f"probabilities sum to {total:.15g}, not 1 within {SUM_TOL:g}")
    return p, r


def reference_family(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """(probs, rewards) of ``uniform:N``, ``zipf:s:N`` or ``geometric:r:N``.

    Outcome i = 1..N has reward i (all distinct) and probability 1/N, ∝ i^(−s) (any real s)
    or ∝ r^(i−1) (r > 0). So s > 0 or r < 1: the best outcome is the rarest; s < 0 or
    r > 1: the best outcome is the most likely (a heavy top outcome)."""
    parts = spec.split(":")
    name = parts[0]
    shape = {"uniform": 2, "zipf": 3, "geometric": 3}
    if name not in shape:
        raise InputError(f"unknown reference family {name!r}: use uniform:N, zipf:s:N or geometric:r:N, or a file")
    if len(parts) != shape[name]:
        form = {"uniform": "uniform:N", "zipf": "zipf:s:N", "geometric": "geometric:r:N"}[name]
        raise InputError(f"reference {spec!r} must have the form {form}")
    N = spec_number(parts[-1], "N", f"reference {show(spec)}", integer=True)
    if N < 1:
        raise InputError(f"reference {spec!r}: N must be >= 1, got {N}")
    if N > MAX_OUTCOMES:
        raise InputError(f"reference {spec!r}: N = {N} is above the cap MAX_OUTCOMES = {MAX_OUTCOMES}")
    i = np.arange(1, N + 1, dtype=np.float64)
    if name == "uniform":
        logw = np.zeros(N)
    else:
        x = spec_number(parts[1], "s" if name == "zipf" else "r", f"reference {show(spec)}")
        if name == "zipf":
            logw = -x * np.log(i)
        else:
            if not x > 0:
                raise InputError(f"reference {spec!r}: r must be > 0, got {parts[1]}")
            logw = (i - 1) * math.log(x)
    logw -= logw.max()
    w = np.exp(logw)
    probs = w / math.fsum(w.tolist())
    return probs, i.copy()


def parse_n(text: str) -> list[int]:
    """n values from ``7``, ``1..64`` (every integer) or ``1,2,4,8``; InputError if outside 1..MAX_N."""
    text = str(text).strip()

    def as_int(x: str) -> int:
        if not _ASCII_INT.fullmatch(x.strip()):
            raise InputError(f"--n must be an integer, a range A..B or a list A,B,C (ASCII digits); got {show(text)}")
        return int(x)

    if ".." in text:
        a, b = text.split("..", 1)
        lo, hi = as_int(a), as_int(b)
        if lo > hi:
            raise InputError(f"--n {text}: empty range ({lo} > {hi})")
        _check_n(lo, text)
        _check_n(hi, text)
        if hi - lo + 1 > MAX_SWEEP_VALUES:
            raise InputError(f"--n {text}: {hi - lo + 1} values, above the cap MAX_SWEEP_VALUES = {MAX_SWEEP_VALUES}")
        return list(range(lo, hi + 1))
    parts = text.split(",")
    if len(parts) > MAX_SWEEP_VALUES:
        raise InputError(f"--n: {len(parts)} values, above the cap MAX_SWEEP_VALUES = {MAX_SWEEP_VALUES}")
    ns = [as_int(x) for x in parts]
    for n in ns:
        _check_n(n, text)
    return ns


def _check_n(n: int, text: str) -> None:
    if n < 1:
        raise InputError(f"--n {text}: n must be >= 1 (best of n draws), got {n}")
    if n > MAX_N:
        raise InputError(f"--n {text}: n = {n} is above the cap MAX_N = {MAX_N}")


@dataclass(frozen=True)
class BonReference:
    """A reference split into tie classes, ordered by increasing reward.

    Per output (kept outcomes, probability > 0): ``eps`` = π_ref(y), ``cls`` its class.
    Per class: ``q`` = π_ref(C), ``F``, ``S`` = 1 − F, ``F_lt`` = F_<, ``log_F`` = log F,
    ``log_ratio`` = log(F_</F) (−inf for the lowest class), ``reward``."""

    eps: np.ndarray
    reward_of_output: np.ndarray
    index: np.ndarray  # input index of each kept output
    cls: np.ndarray
    q: np.ndarray
    F: np.ndarray
    S: np.ndarray
    F_lt: np.ndarray
    log_F: np.ndarray
    log_ratio: np.ndarray
    reward: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.q.size)

    @property
    def n_outputs(self) -> int:
        return int(self.eps.size)


def prepare_reference(probs, rewards) -> BonReference:
    """Tie classes and exactly rounded F, 1 − F, q, F_< (see module docstring).

    Probabilities are divided by their (exact) sum, which ``check_reference`` holds to 1 ± 1e-9;
    outcomes of probability 0 are dropped (best-of-n never selects them)."""
    p, r = check_reference(probs, rewards)
    keep = np.flatnonzero(p > 0)
    order = keep[np.argsort(r[keep], kind="stable")]
    p, r = p[order], r[order]
    # exact: every float is m·2^e; scale all to the smallest exponent as Python integers
    ratios = [x.as_integer_ratio() for x in p.tolist()]
    den = max(d for _, d in ratios)
    ints = [num * (den // d) for num, d in ratios]
    total = sum(ints)
    eps = np.array([x / total for x in ints])  # int / int: correctly rounded
    starts = np.flatnonzero(np.concatenate([[True], r[1:] != r[:-1]]))
    cls = np.cumsum(np.concatenate([[False], r[1:] != r[:-1]])).astype(np.int64)
    ends = np.concatenate([starts[1:], [r.size]])
    cum = list(accumulate(ints))
    cum_end = [cum[e - 1] for e in ends.tolist()]
    cum_start = [0] + cum_end[:-1]
    F = np.array([c / total for c in cum_end])
    S = np.array([(total - c) / total for c in cum_end])
    F_lt = np.array([c / total for c in cum_start])
    q = np.array([(b - a) / total for a, b in zip(cum_start, cum_end)])
    with np.errstate(divide="ignore"):
        log_F = np.where(S < 0.5, np.log1p(-S), np.log(F))
        x = q / F
        log_ratio = np.where(x < 0.5, np.log1p(-x), np.log(F_lt) - np.log(F))
    return BonReference(eps=eps, reward_of_output=r, index=order, cls=cls, q=q, F=F, S=S, F_lt=F_lt,
                        log_F=log_F, log_ratio=log_ratio, reward=r[starts])


# --------------------------------------------------------------------------- formulas

def kl_bound(n):
    """log n − (n−1)/n: the KL of best-of-n for a continuous reference (an upper bound)."""
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) - (n - 1) / n


def win_rate_bound(n):
    """n/(n+1): the win rate of best-of-n against π_ref for a continuous reference (an upper bound)."""
    n = np.asarray(n, dtype=np.float64)
    return n / (n + 1)


def kl_estimator(eps, n):
    """KL̂(ε) = (1−ε)^n [log n + (n−1) log(1−ε) − (n−1)/n] + (1−(1−ε)^n) log((1−(1−ε)^n)/ε).

    Broadcasts over ``eps`` (π_ref of the selected output, in (0, 1]) and ``n``;
    evaluated as A = exp(n log1p(−ε)), 1 − A = −expm1(n log1p(−ε)); KL̂(1) = 0."""
    eps = np.asarray(eps, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _kl_estimator_from_logs(np.log1p(-eps), np.log(eps), n)


def _kl_estimator_from_logs(l1, log_eps, n):
    """KL̂ from l1 = log1p(−ε) and log ε (precomputed once per output in a sweep)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        nl = n * l1
        A = np.exp(nl)
        B = -np.expm1(nl)
        first = np.where(A > 0, A * (np.log(n) + (n - 1) * l1 - (n - 1) / n), 0.0)
        second = np.where(B > 0, B * (np.log(B) - log_eps), 0.0)
    return first + second


def bon_class_log_probs(ref: BonReference, ns) -> np.ndarray:
    """log π_n(C) for every n in ``ns`` (rows) and class C (columns); −inf where π_n(C) = 0.

    log π_n(C) = n·log F + log(−expm1(n·log(F_</F)))."""
    ns = np.asarray(ns, dtype=np.float64).reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.log(-np.expm1(ns * ref.log_ratio[None, :]))
        out = ns * ref.log_F[None, :] + tail
    return np.where(np.isnan(out), -np.inf, out)


def bon_probs(probs, rewards, n: int) -> np.ndarray:
    """π_n(y) for every input outcome (input order; 0 where π_ref(y) = 0)."""
    ref = prepare_reference(probs, rewards)
    _check_n(int(n), str(n))
    L = bon_class_log_probs(ref, [n])[0]
    out = np.zeros(np.asarray(probs).size)
    out[ref.index] = np.exp(L[ref.cls]) * ref.eps / ref.q[ref.cls]
    return out


_LOG_UNDERFLOW = -746.0  # exp(x) == 0.0 in float64 for every x below this


def _sweep_block(ref: BonReference, ns: np.ndarray) -> dict:
    """One block of n values (ascending). Classes with min(n)·log F < −746 are skipped: there
    π_n(C) ≤ F^n underflows to exactly 0 for every n of the block, so nothing changes."""
    j0 = int(np.searchsorted(ns[0] * ref.log_F, _LOG_UNDERFLOW, side="left"))
    sub = _slice_classes(ref, j0)
    L = bon_class_log_probs(sub, ns)  # (n, C)
    P = np.exp(L)
    log_q = np.log(sub.q)
    with np.errstate(invalid="ignore"):
        kl = np.where(P > 0, P * (L - log_q[None, :]), 0.0).sum(axis=1)
    win = P @ (sub.F_lt + 0.5 * sub.q)
    # E_{π_n}[KL̂(ε_y)] = Σ_C π_n(C)/q_C · Σ_{y∈C} ε_y KL̂_n(ε_y)
    with np.errstate(divide="ignore"):
        l1, log_eps = np.log1p(-sub.eps), np.log(sub.eps)
    inner = _kl_estimator_from_logs(l1[None, :], log_eps[None, :], ns[:, None]) * sub.eps[None, :]  # (n, outputs)
    if sub.n_outputs == sub.n_classes:
        per_class = inner
    else:  # outputs are ordered by class: sum each class's contiguous columns
        starts = np.flatnonzero(np.diff(sub.cls, prepend=-1))
        per_class = np.add.reduceat(inner, starts, axis=1)
    est = (P / sub.q[None, :] * per_class).sum(axis=1)
    return {"kl": kl, "win_rate": win, "kl_estimator": est}


def _slice_classes(ref: BonReference, j0: int) -> BonReference:
    """The classes j0.. of ``ref`` (and their outputs); the lowest class is kept if all are cut."""
    j0 = min(j0, ref.n_classes - 1)
    if j0 <= 0:
        return ref
    o0 = int(np.searchsorted(ref.cls, j0, side="left"))
    return BonReference(eps=ref.eps[o0:], reward_of_output=ref.reward_of_output[o0:], index=ref.index[o0:],
                        cls=ref.cls[o0:] - j0, q=ref.q[j0:], F=ref.F[j0:], S=ref.S[j0:], F_lt=ref.F_lt[j0:],
                        log_F=ref.log_F[j0:], log_ratio=ref.log_ratio[j0:], reward=ref.reward[j0:])


def bon_sweep(ref: BonReference, ns, block_cells: int = 2_000_000) -> dict:
    """Exact KL, its bound, E_{π_n}[KL̂], win rate and its bound for each n in ``ns`` (arrays).

    Vectorised in blocks of about ``block_cells`` (n × outputs) cells; InputError above
    MAX_SWEEP_WORK = (number of n) × (number of outputs)."""
    ns = np.asarray([int(n) for n in ns], dtype=np.int64)
    if ns.size == 0:
        raise InputError("no n to evaluate")
    work = ns.size * ref.n_outputs
    if work > MAX_SWEEP_WORK:
        raise InputError(f"sweep of {ns.size} values of n over {ref.n_outputs} outcomes is {work} cells, "
                         f"above the cap MAX_SWEEP_WORK = {MAX_SWEEP_WORK}")
    order = np.argsort(ns, kind="stable")
    sorted_ns = ns[order]
    rows = max(1, block_cells // max(ref.n_outputs, 1))
    parts = [_sweep_block(ref, sorted_ns[i:i + rows].astype(np.float64)) for i in range(0, ns.size, rows)]
    out = {}
    for key in ("kl", "win_rate", "kl_estimator"):
        values = np.empty(ns.size)
        values[order] = np.concatenate([p[key] for p in parts])
        out[key] = values
    out["n"] = ns
    out["kl_bound"] = kl_bound(ns)
    out["win_rate_bound"] = win_rate_bound(ns)
    return out


def bon_per_output(ref: BonReference, n: int) -> dict:
    """Per kept output (ordered by reward): input index, π_ref, reward, π_n and KL̂(π_ref(y))."""
    L = bon_class_log_probs(ref, [n])[0]
    pn = np.exp(L[ref.cls]) * ref.eps / ref.q[ref.cls]
    return {"index": ref.index, "prob": ref.eps, "reward": ref.reward_of_output, "bon_prob": pn,
            "kl_estimator": kl_estimator(ref.eps, n)}


def bon_probs_mp(probs, rewards, n: int, dps: int = 50):
    """Reference evaluation in mpmath (``dps`` digits) from exact rational F: returns
    (π_n(y) per input outcome, KL, win rate) as mpf. Slow; for tests and spot checks."""
    from fractions import Fraction

    import mpmath

    p = [Fraction(x) for x in np.asarray(probs, dtype=float).tolist()]
    r = np.asarray(rewards, dtype=float).tolist()
    total = sum(p)
    p = [x / total for x in p]
    with mpmath.workdps(dps):
        levels = sorted(set(r[i] for i in range(len(p)) if p[i] > 0))
        q = {v: sum((p[i] for i in range(len(p)) if r[i] == v), Fraction(0)) for v in levels}
        Fc, acc = {}, Fraction(0)
        for v in levels:
            Flt = acc
            acc += q[v]
            Fc[v] = (Flt, acc)
        pn = []
        kl = mpmath.mpf(0)
        win = mpmath.mpf(0)
        for v in levels:
            Flt, F = Fc[v]
            m = mpmath.power(mpmath.mpf(F.numerator) / F.denominator, n) - \
                mpmath.power(mpmath.mpf(Flt.numerator) / Flt.denominator, n)
            qv = mpmath.mpf(q[v].numerator) / q[v].denominator
            if m > 0:
                kl += m * mpmath.log(m / qv)
            win += m * (mpmath.mpf(Flt.numerator) / Flt.denominator + qv / 2)
        for i in range(len(p)):
            if p[i] == 0:
                pn.append(mpmath.mpf(0))
                continue
            Flt, F = Fc[r[i]]
            m = mpmath.power(mpmath.mpf(F.numerator) / F.denominator, n) - \
                mpmath.power(mpmath.mpf(Flt.numerator) / Flt.denominator, n)
            pn.append(m * (mpmath.mpf(p[i].numerator) / p[i].denominator) / (mpmath.mpf(q[r[i]].numerator) / q[r[i]].denominator))
        return pn, kl, win


# --------------------------------------------------------------------------- quantile rewards

def bon_quantile_counts(sample_rewards, reference_rewards) -> np.ndarray:
    """c = 1 + #{j : r(y′_j) ≤ r(y)} per policy sample (ties counted as ≤), in 1..k+1.

    ``reference_rewards`` (B, k): the k reference samples' rewards of each prompt;
    ``sample_rewards`` (B,) or (B, m): policy samples of the same prompts. Same shape out."""
    ref = np.asarray(reference_rewards, dtype=np.float64)
    s = np.asarray(sample_rewards, dtype=np.float64)
    if ref.ndim != 2:
        raise ValueError(f"reference_rewards must be 2-D (prompts, k), got shape {ref.shape}")
    squeeze = s.ndim == 1
    if squeeze:
        s = s[:, None]
    if s.ndim != 2 or s.shape[0] != ref.shape[0]:
        raise ValueError(f"sample_rewards must be (B,) or (B, m) with B = {ref.shape[0]} prompts "
                         f"(reference_rewards {ref.shape}), got shape {np.shape(sample_rewards)}")
    if np.isnan(ref).any() or np.isnan(s).any():
        raise ValueError("rewards contain NaN: a NaN reward has no rank")
    B, k = ref.shape
    m = s.shape[1]
    # one stable sort per row of [references, samples]: a reference equal to a sample sorts
    # before it, so the references before a sample are exactly those with reward ≤ its reward
    both = np.concatenate([ref, s], axis=1)
    order = np.argsort(both, axis=1, kind="stable")
    is_ref = order < k
    before = np.cumsum(is_ref, axis=1)  # references at or before each sorted position
    counts = np.empty((B, m), dtype=np.int64)
    rows = np.repeat(np.arange(B), k + m).reshape(B, k + m)
    sample_pos = ~is_ref
    counts[rows[sample_pos], order[sample_pos] - k] = before[sample_pos] + 1
    return counts[:, 0] if squeeze else counts


def bon_quantile_rewards(table, sample_rewards, reference_rewards):
    """Table rewards t[c] for c = 1 + #{j : r(y′_j) ≤ r(y)}: an estimate of r(p_≤(y)).

    ``table``: a RewardTable or a path to a table file with K = k + 1 (a kl table estimates
    log p_≤(y), BOND's and vBoN's reward). Shapes as ``bon_quantile_counts``; numpy in, numpy
    out (a torch tensor in gives a torch tensor out)."""
    import os

    from .runtime import RewardTable, load

    torch_like = None
    if type(sample_rewards).__module__.startswith("torch"):
        torch_like = sample_rewards
        sample_rewards = sample_rewards.detach().cpu().numpy()
    if type(reference_rewards).__module__.startswith("torch"):
        reference_rewards = reference_rewards.detach().cpu().numpy()
    if isinstance(table, (str, os.PathLike)):
        table = load(table)
    if not isinstance(table, RewardTable):
        raise TypeError(f"expected a RewardTable or a path to a table file, got {type(table).__name__}")
    k = np.shape(reference_rewards)[-1] if np.ndim(reference_rewards) == 2 else None
    if k is not None and table.K != k + 1:
        raise ValueError(f"the table has K = {table.K} but there are k = {k} reference samples per prompt: "
                         f"quantile rewards need K = k + 1 = {k + 1}")
    out = table(bon_quantile_counts(sample_rewards, reference_rewards))
    if torch_like is not None:
        import torch

        return torch.as_tensor(out, device=torch_like.device)
    return out


def expected_estimate(values, p) -> np.ndarray:
    """E[t_c] for c − 1 ~ Bin(K − 1, p), K = len(values), at each p (exact binomial law,
    computed in float64 from log-binomial terms)."""
    from math import comb

    t = np.asarray(values, dtype=np.float64)
    K = t.size
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    j = np.arange(K)
    logc = np.array([math.log(comb(K - 1, int(i))) for i in j])
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.where(j[None, :] == 0, 0.0, j[None, :] * np.log(p)[:, None])
        lq = np.where(j[None, :] == K - 1, 0.0, (K - 1 - j)[None, :] * np.log1p(-p)[:, None])
        w = np.exp(logc[None, :] + lp + lq)
    return w @ t


def clamped_plugin_table(k: int) -> np.ndarray:
    """BOND-style plug-in as a table of K = k + 1: t_c = log(max(c − 1, 1)/k)
    (the fraction of the k reference samples with reward ≤ r(y), 0 clamped to 1/k)."""
    c = np.arange(1, k + 2)
    return np.log(np.maximum(c - 1, 1) / k)


def rank_plugin_table(k: int) -> np.ndarray:
    """vBoN-style plug-in as a table of K = k + 1: t_c = log(c/(k + 1)) = log((rank + 1)/(k + 1)),
    rank = #{j : r(y′_j) ≤ r(y)}. This is coefgen's kl ``plugin`` table at K = k + 1."""
    c = np.arange(1, k + 2)
    return np.log(c / (k + 1))


def vbon_equilibrium_kl(values, n: int, N: int = 10_000) -> float:
    """KL(π_T ‖ π_log): how far the optimum of vBoN's objective moves when log F is replaced by
    a table's mean T(F) (T(p) = E[t_c], c − 1 ~ Bin(K − 1, p)).

    vBoN maximises E_π[(n − 1)·R(y)] − KL(π‖π_ref) with R = log F(y); its optimum is
    π_R ∝ π_ref·exp((n − 1) R). The k reference samples are drawn afresh, independently of the
    policy, so a table reward t_c is an unbiased estimate of T(F(y)) and training converges
    (in expectation, for a fully expressive policy) to π_T ∝ π_ref·exp((n − 1) T(F)) instead of
    π_log ∝ π_ref·F^(n−1). Evaluated on the reference uniform:N (F_j = j/N, j = 1..N), a
    discretisation of a continuous reward; a constant offset in T changes nothing."""
    t = np.asarray(values, dtype=np.float64)
    F = np.arange(1, N + 1, dtype=np.float64) / N
    a = (n - 1) * expected_estimate(t, F)
    b = (n - 1) * np.log(F)
    la = a - _logsumexp(a)
    lb = b - _logsumexp(b)
    return float(np.sum(np.exp(la) * (la - lb)))


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(math.fsum(np.exp(x - m).tolist()))
