"""The alignment game of DESIGN §10: what a trainer using a table converges to, and how fast.

P prompts; prompt i has a target q_i over M answers and a fully expressive softmax policy
p_i = softmax(θ_i). The trainer minimises the Bregman divergence of the table's reward
r = φ′ (DESIGN §3)

    D_φ(p‖q) = Σ_z [φ(p_z) − φ(q_z) − φ′(q_z)(p_z − q_z)],   ∇_θ D_φ = E_{z~p}[(r(p_z) − r(q_z)) ∇_θ log p_z],

replacing the unknown r(p_z) of each sample by the table entry t[c] of its count c: the
sample of answer z costs a = t[c] − r(q_z).

**This is the KL-regularised objective of RLHF/GRPO.** For kl (φ = p log p − p),
max_p E_p[R] − β KL(p‖p_ref) = −β min_p KL(p‖q) + const with q ∝ p_ref·exp(R/β): its
gradient is E_{z~p}[(log p_z − log q_z)∇ log p_z], i.e. each sample's cost is
log p_z − log p_ref(z) − R(z)/β, and the trainer estimates the unknown log p_z from the
group's counts with t[c]. A table here is exactly the answer-level reward a trainer
plugs in; q encodes the reward model and the reference policy.

Expected dynamics (exact). Given its answer z, a sample's count is c − 1 ~ Bin(K − 1, p_z),
so E[t_c | z] = T(p_z) (DESIGN §2) and the expected REINFORCE step without a baseline is
θ̇_k = −p_k (g_k − Σ_j p_j g_j) with g_z = T(p_z) − r(q_z): a gradient flow of the
potential F(p) = Σ_z [∫₀^{p_z} T − r(q_z) p_z]. Its stationary points: g_z = λ on the
surviving answers; an answer whose cost at p = 0, t_1 − r(q_z), is ≥ λ dies (p_z → 0, only
algebraically in time: ṗ_z ≈ −p_z²·(g_z − λ)). If T is increasing, F is convex and this
equilibrium is unique; otherwise (e.g. minimax tables, alternating entries) we report what
the trajectory from the uniform policy reaches.

**Baselines change the expected gradient here.** The standard argument that a baseline does
not bias REINFORCE needs the baseline of sample i to be independent of i's answer. With
count-based rewards it is not: the other samples' counts include sample i. Exactly
(E over the multinomial group), the leave-one-out advantage a_i − mean_{j≠i} a_j has
expected cost per answer

    T_loo(p) = T(p) − p T′(p)/(K − 1)

(derivation: given z_i = z, another sample j of answer z has count 2 + Bin(K − 2, p_z)
instead of 1 + Bin(K − 2, p_z), and E[t_{c+1} − t_c] over c − 1 ~ Bin(K − 2, p) is
T′(p)/(K − 1)). The group-mean baseline a_i − S/K equals (K − 1)/K times the leave-one-out
advantage (same equilibrium, slower). For kl, p T′(p) ≈ 1 where T ≈ log p, so T_loo ≈ T −
1/(K − 1) there (a harmless constant) but not where T flattens (p ≲ 1/K): rare answers pay
up to 1/(K − 1) more. Even an exact table is biased under LOO (euclidean: T_loo(p) =
p (K − 2)/(K − 1) − 1). The Bernstein coefficients of T_loo, s_c = t_c − (c − 1)(t_c − t_{c−1})/(K − 1),
are exactly the degree elevation of t_1..t_{K−1}: **under LOO a K-sample table acts as its first
K − 1 entries used as a (K − 1)-sample table without baseline**, and t_K never matters (when all
K samples agree, every LOO advantage is 0). So the table to use with LOO at group size K is the
one designed for K − 1 samples, padded with any t_K (``loo_equivalent_table``).
``baseline="none"`` (advantage = the cost itself) is the unbiased estimator of the T-dynamics. GRPO's std normalisation has no closed form; it is measured.
``mean_field_equilibrium(..., baseline=...)`` integrates the exact expected dynamics of
"none" (the issue's definition, the default) or of "loo"/"mean".

Everything here is pure numpy (numbers in, numbers out); I/O and plots live elsewhere.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .bernstein import log_binomial_coefficients
from .errors import InputError
from .spec_numbers import show, spec_number
from .rewards import KL, Alpha, Poly, Reward, parse_reward

BASELINES = ("loo", "mean", "grpo", "none")
OPTIMIZERS = ("sgd", "adam")
GRPO_STD_EPS = 1e-4          # TRL: (r − mean)/(std + 1e-4), std = torch.std (sample std, K − 1)
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

# "near zero": an answer is dead when the trajectory has brought p_z ≤ DEAD_P while its cost
# exceeds the survivors' common cost both at p_z and at p = 0 (t_1 − r(q_z) > λ); its limit
# is then exactly 0 and p*_z is reported as 0.
DEAD_P = 1e-6
SETTLED_TOL = 1e-9           # |g_z − ḡ| below which a surviving answer counts as settled
NEWTON_TOL = 1e-13           # stationarity residual the Newton polish aims for

MF_MAX_STEPS = 5_000         # implicit steps of the mean-field flow (with Φ-descent step control ≤ ~2500 measured)
MAX_M = 100_000              # answers per prompt
MAX_PM = 4_000_000           # prompts × answers (memory: a few float64 arrays of this size)
MAX_PROMPTS = 1_000_000


# --------------------------------------------------------------------------------------
# the table's mean T(p) and its derivatives


def _table(values) -> np.ndarray:
    t = np.asarray(values, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise InputError(f"a table needs K >= 2 values, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise InputError("table values must be finite")
    return t


@functools.lru_cache(maxsize=16)
def _log_binomials(n: int) -> np.ndarray:
    """log C(n, j), j = 0..n (gammaln loses ~1e-12 at n ~ 1000): correctly rounded from exact integers
    up to n = 4096; above, a cumulative sum of log((n − i + 1)/i) in extended precision (long double),
    mirrored from the middle (~1e-15 relative at n = 16384; exact-integer logs take ~30 s there)."""
    if n <= 4096:
        out = log_binomial_coefficients(n)
    else:
        i = np.arange(1, n // 2 + 1, dtype=np.longdouble)
        half = np.concatenate([[0.0], np.cumsum(np.log((n - i + 1) / i))]).astype(np.longdouble)
        out = np.empty(n + 1)
        out[: half.size] = half.astype(float)
        out[n - half.size + 1:] = half[::-1].astype(float)
    out.setflags(write=False)
    return out


def _log_pmf(n: int, p: np.ndarray) -> np.ndarray:
    """log C(n, j) p^j (1 − p)^(n − j), j = 0..n, for a flat float64 p in [0, 1] (−inf where 0)."""
    j = np.arange(n + 1)
    logc = _log_binomials(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(p)[:, None]
        lq = np.log1p(-p)[:, None]
        a = np.where(j[None, :] == 0, 0.0, j[None, :] * lp)
        b = np.where(j[None, :] == n, 0.0, (n - j)[None, :] * lq)
    return logc[None, :] + a + b


def _lower_degree(B: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Bernstein basis of degree n − 1 from degree n (no cancellation: a ratio of terms).

    B^{n−1}_j = B^n_j (n − j)/(n (1 − p))  (used for p ≤ 1/2),  = B^n_{j+1} (j + 1)/(n p)  (p > 1/2)."""
    n = B.shape[1] - 1
    j = np.arange(n)
    low = p <= 0.5
    out = np.empty((B.shape[0], n))
    if np.any(low):
        pl = p[low][:, None]
        out[low] = B[low, :n] * ((n - j) / n)[None, :] / (1.0 - pl)
    if np.any(~low):
        ph = p[~low][:, None]
        out[~low] = B[~low, 1:] * ((j + 1) / n)[None, :] / ph
    return out


_CHUNK = 1 << 21  # entries of a pmf matrix evaluated at once (16 MiB)


def table_mean_derivatives(values, p, order: int = 0):
    """[T(p), T′(p), …, T^(order)(p)] for any-shaped p in [0, 1] (order ≤ 2).

    T = Σ_c t_c B^{K−1}_{c−1},  T′ = (K−1) Σ Δt_c B^{K−2}_{c−1},  T″ = (K−1)(K−2) Σ Δ²t_c B^{K−3}_{c−1};
    one pmf matrix per point (log-space, stable for K up to 16384)."""
    t = _table(values)
    K = t.size
    p = np.asarray(p, dtype=float)
    flat = np.clip(p.ravel(), 0.0, 1.0)
    outs = [np.empty(flat.size) for _ in range(order + 1)]
    coeffs = [t]
    for k in range(1, order + 1):
        coeffs.append(np.diff(coeffs[-1]) * (K - k))
    step = max(1, _CHUNK // K)
    for s in range(0, flat.size, step):
        x = flat[s:s + step]
        B = np.exp(_log_pmf(K - 1, x))
        for k in range(order + 1):
            if k:
                if B.shape[1] == 1:
                    outs[k][s:s + step] = 0.0
                    continue
                B = _lower_degree(B, x)
            outs[k][s:s + step] = B @ coeffs[k] if coeffs[k].size else 0.0
    return [o.reshape(p.shape) for o in outs]


def expected_reward(values, p):
    """T(p) = Σ_c t_c C(K−1, c−1) p^(c−1) (1−p)^(K−c): the mean reward of a sample whose answer has probability p."""
    return table_mean_derivatives(values, p, 0)[0]


def effective_table(values, baseline: str = "none") -> np.ndarray:
    """The table whose mean is the expected cost per answer (without −r(q)) under ``baseline``.

    none: t itself.  loo and mean: s_c = t_c − (c − 1)(t_c − t_{c−1})/(K − 1), the Bernstein
    coefficients of T(p) − p T′(p)/(K − 1)  (p T′ = Σ_c (c−1)(t_c − t_{c−1}) B_c); for mean the
    whole expected cost s − r(q) is further multiplied by (K − 1)/K (``baseline_scale``)."""
    if baseline not in ("none", "loo", "mean"):
        raise InputError(f"baseline {baseline!r} has no closed-form expected dynamics (none, loo, mean have)")
    t = _table(values)
    if baseline == "none":
        return t
    K = t.size
    c = np.arange(1, K + 1)
    d = np.concatenate([[0.0], np.diff(t)])
    return t - (c - 1) * d / (K - 1)


def effective_mean(values, p, baseline: str = "none", order: int = 0):
    """[T_b(p), T_b′(p), …] up to ``order``: the mean of ``effective_table(values, baseline)``."""
    return table_mean_derivatives(effective_table(values, baseline), p, order)


def loo_equivalent_table(values) -> np.ndarray:
    """t_1..t_{K−1}: the (K−1)-sample table whose mean (no baseline) is the LOO expected cost of t.

    Σ_c s_c B^{K−1}_c with s = effective_table(t, "loo") equals Σ_{c<K} t_c B^{K−2}_c (degree elevation)."""
    t = _table(values)
    if t.size < 3:
        raise InputError("a LOO-equivalent table needs K >= 3 (K - 1 >= 2 samples)")
    return t[:-1].copy()


def baseline_scale(baseline: str, K: int) -> float:
    """The factor of the expected gradient: (K−1)/K for the group mean (a_i − S/K = (K−1)/K · LOO), else 1."""
    return (K - 1) / K if baseline == "mean" else 1.0


CHEBYSHEV_FROM_K = 96   # from this K on, T and T′ are evaluated through their Chebyshev series


class MeanEvaluator:
    """T(p) and T′(p) of one table at many points, fast: for K ≥ CHEBYSHEV_FROM_K through the exact
    Chebyshev series of the degree-(K−1) polynomial T(p) = Σ_k c_k T_k(1 − 2p) (c from T at K
    Chebyshev nodes, a DCT; Clenshaw: O(K) vector operations, ~10× faster than the pmf matrix,
    absolute error ~1e-13 at K = 1024); below, the pmf matrix."""

    def __init__(self, values):
        self.t = _table(values)
        K = self.t.size
        self.cheb = K >= CHEBYSHEV_FROM_K
        if self.cheb:
            from scipy.fft import dct

            m = np.arange(K)
            nodes = 0.5 * (1.0 - np.cos(np.pi * (m + 0.5) / K))
            v = table_mean_derivatives(self.t, nodes, 0)[0]
            c = dct(v, type=2) / K
            c[0] /= 2
            self.c = c
            self.dc = np.polynomial.chebyshev.chebder(c) * -2.0

    def __call__(self, p):
        p = np.asarray(p, dtype=float)
        if not self.cheb or p.size < 256:   # few points: the pmf matrix beats Clenshaw's K-step loop
            T, dT = table_mean_derivatives(self.t, p, 1)
            return T, dT
        x = 1.0 - 2.0 * np.clip(p, 0.0, 1.0)
        cv = np.polynomial.chebyshev.chebval
        return cv(x, self.c), cv(x, self.dc)


# --------------------------------------------------------------------------------------
# rewards, generators, divergences


def _reward(reward) -> Reward:
    return reward if isinstance(reward, Reward) else parse_reward(reward)


def generator(reward, p):
    """φ(p) with φ′ = r (up to an affine term, irrelevant in D_φ): kl p log p − p; alpha (p^a − a p)/(a(a−1))."""
    reward = _reward(reward)
    p = np.asarray(p, dtype=float)
    if isinstance(reward, KL):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0) - p
    if isinstance(reward, Alpha):
        a = float(reward.a)
        return (p**a - a * p) / (a * (a - 1))
    if isinstance(reward, Poly):
        out = np.zeros_like(p)
        for m, c in reversed(list(enumerate(reward.coefficients))):
            out = out * p + float(c) / (m + 1)
        return out * p
    raise InputError(f"no generator for reward {reward.name!r}")  # pragma: no cover


def _reward_at(reward: Reward, q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(reward.r(q), dtype=float)


def support_mask(reward, q) -> np.ndarray:
    """Answers that take part: q_z > 0, or r(0) finite (kl and alpha < 1 give q_z = 0 an infinite cost)."""
    reward = _reward(reward)
    q = np.asarray(q, dtype=float)
    r0 = _reward_at(reward, np.zeros(1))[0]
    return (q > 0) | bool(np.isfinite(r0))


def bregman_divergence(reward, p, q):
    """D_φ(p‖q) = Σ_z [φ(p_z) − φ(q_z) − r(q_z)(p_z − q_z)] over the last axis (inf if p_z > 0 = q_z with r(0) = −inf)."""
    reward = _reward(reward)
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    live = support_mask(reward, q)
    rq = np.where(live, _reward_at(reward, np.where(live, q, 1.0)), 0.0)
    terms = np.where(live, generator(reward, p) - generator(reward, q) - rq * (p - q), 0.0)
    out = terms.sum(axis=-1)
    bad = np.any(~live & (p > 0), axis=-1)
    return np.where(bad, np.inf, out)


def kl_divergence(p, q):
    """KL(p‖q) = Σ p log(p/q) over the last axis (0 log 0 = 0; inf if p_z > 0 = q_z)."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.where(q > 0, q, 1.0))), 0.0)
    out = np.maximum(terms.sum(axis=-1), 0.0)   # ≥ 0 for normalised p, q (clears rounding)
    return np.where(np.any((p > 0) & (q <= 0), axis=-1), np.inf, out)


def softmax(theta):
    theta = np.asarray(theta, dtype=float)
    m = np.max(theta, axis=-1, keepdims=True)
    e = np.exp(theta - m)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------
# targets


def _spec_M(text, spec):
    M = spec_number(text, "M", f"target {show(spec)}", integer=True)
    if M < 2:
        raise InputError(f"target {spec!r}: M = {M}: a target needs M >= 2 answers")
    if M > MAX_M:
        raise InputError(f"target {spec!r}: M = {M} answers exceeds the cap {MAX_M}")
    return M


def _check_prompts(prompts) -> int:
    if isinstance(prompts, bool) or not isinstance(prompts, (int, np.integer)):
        raise InputError(f"prompts must be an integer, got {prompts!r}")
    if not 1 <= prompts <= MAX_PROMPTS:
        raise InputError(f"prompts = {prompts}: must be between 1 and {MAX_PROMPTS}")
    return int(prompts)


def validate_targets(q, where: str = "targets") -> np.ndarray:
    """q as a float64 (P, M) array: finite, ≥ 0, rows summing to 1 within 1e-9, M ≥ 2, P·M ≤ MAX_PM."""
    if isinstance(q, np.ndarray) and q.dtype.kind not in "iuf":
        raise InputError(f"{where}: entries must be real numbers, got dtype {q.dtype}")
    try:
        q = np.array(q, dtype=float)
    except OverflowError:  # a 400-digit integer
        raise InputError(f"{where}: an entry is beyond float64") from None
    except (TypeError, ValueError):
        raise InputError(f"{where}: not a rectangular array of numbers (a list of equal-length lists)") from None
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] < 1:
        raise InputError(f"{where}: expected a (prompts, answers) array, got shape {q.shape}")
    P, M = q.shape
    if M < 2:
        raise InputError(f"{where}: M = {M}: a target needs M >= 2 answers")
    if M > MAX_M or P * M > MAX_PM:
        raise InputError(f"{where}: {P} x {M} exceeds the caps (M <= {MAX_M}, prompts x answers <= {MAX_PM})")
    if not np.all(np.isfinite(q)):
        raise InputError(f"{where}: entries must be finite")
    if np.any(q < 0):
        i, z = np.argwhere(q < 0)[0]
        raise InputError(f"{where}: row {i} has a negative probability {q[i, z]!r}")
    s = q.sum(axis=1)
    bad = np.abs(s - 1.0) > 1e-9
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(f"{where}: row {i} sums to {s[i]!r}, not 1 (tolerance 1e-9)")
    return q


def make_targets(spec: str, prompts: int, seed: int = 0) -> np.ndarray:
    """Targets q of shape (P, M) from ``zipf:s:M`` (q_z ∝ z^−s, every prompt), ``dirichlet:alpha:M``
    (one seeded draw per prompt) or a file (JSON list of lists, or .npy; a single row is repeated)."""
    P = _check_prompts(prompts)
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("target: give zipf:s:M, dirichlet:alpha:M or a file")
    s = spec.strip()
    low = s.lower()
    if low.startswith("zipf:") or low.startswith("dirichlet:"):
        parts = s.split(":")
        if len(parts) != 3:
            raise InputError(f"target {spec!r}: expected zipf:s:M or dirichlet:alpha:M")
        kind = parts[0].lower()
        M = _spec_M(parts[2], spec)
        if P * M > MAX_PM:
            raise InputError(f"target {spec!r}: {P} prompts x {M} answers exceeds the cap {MAX_PM}")
        if kind == "zipf":
            e = spec_number(parts[1], "exponent s", f"target {show(spec)}")
            if not 0 <= e <= 100:
                raise InputError(f"target {spec!r}: exponent s must be in [0, 100]")
            w = np.arange(1, M + 1, dtype=float) ** -e
            row = w / w.sum()
            return np.repeat(row[None, :], P, axis=0)
        a = spec_number(parts[1], "alpha", f"target {show(spec)}")
        if not 1e-3 <= a <= 1e6:
            raise InputError(f"target {spec!r}: alpha must be in [0.001, 1e6]")
        rng = np.random.default_rng(seed)
        if a >= 1:
            g = rng.standard_gamma(a, size=(P, M))
        else:
            # G(a) = G(a+1)·U^(1/a) in log space: tiny entries stay distinct and nonzero
            logg = np.log(rng.standard_gamma(a + 1, size=(P, M))) + np.log(rng.random((P, M))) / a
            g = np.exp(logg - logg.max(axis=1, keepdims=True))
        q = g / g.sum(axis=1, keepdims=True)
        return q
    return _targets_from_file(s, P)


def _targets_from_file(path: str, P: int) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"target {path!r}: not zipf:s:M, dirichlet:alpha:M, nor an existing file")
    size = os.path.getsize(path)
    if size > 64 * MAX_PM:
        raise InputError(f"target {path}: file of {size} bytes exceeds the cap {64 * MAX_PM}")
    if path.endswith(".npy"):
        try:
            q = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(f"target {path}: not a readable .npy array ({e})") from None
    else:
        from .payload import parse_json

        try:
            with open(path, "rb") as fh:
                data = fh.read(64 * MAX_PM + 1)
            # strict (duplicate keys, NaN, nesting, huge integers) and memory bounded: the values are
            # counted before parsing (a row per prompt, at most MAX_PM entries)
            q = parse_json(data, f"target {path}", max_values=MAX_PM + MAX_PROMPTS + 1)
        except OSError as e:
            raise InputError(f"target {path}: cannot read ({e.strerror})") from None
        except ValueError as e:
            raise InputError(str(e) if str(e).startswith("target ") else f"target {path}: {e}") from None
        if not isinstance(q, list) or not q or not all(isinstance(r, list) for r in q):
            raise InputError(f"target {path}: expected a JSON list of lists (one distribution per prompt)")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for r in q for x in r):
            raise InputError(f"target {path}: entries must be numbers")
    q = validate_targets(q, f"target {path}")
    if q.shape[0] == 1 and P > 1:
        if P * q.shape[1] > MAX_PM:
            raise InputError(f"target {path}: {P} prompts x {q.shape[1]} answers exceeds the cap {MAX_PM} "
                             "(one row is used for every prompt: reduce --prompts)")
        q = np.repeat(q, P, axis=0)
    return q  # a file with several rows sets the number of prompts


# --------------------------------------------------------------------------------------
# mean field


def unique_rows(q: np.ndarray):
    """(distinct rows in order of first appearance, inverse index): by the rows' bytes (np.unique(axis=0)
    sorts lexicographically and takes ~1 min on 256 identical rows of 1e5 answers)."""
    q = np.ascontiguousarray(q, dtype=float)
    first: dict = {}
    inverse = np.empty(q.shape[0], dtype=np.intp)
    for i in range(q.shape[0]):
        inverse[i] = first.setdefault(q[i].tobytes(), len(first))
    keep = np.zeros(len(first), dtype=np.intp)
    keep[inverse[::-1]] = np.arange(q.shape[0])[::-1]
    return q[keep], inverse


@dataclass
class MeanField:
    """The stationary point reached by the expected dynamics from the uniform policy.

    p (P, M): p*, with dead answers exactly 0.  lam (P,): the survivors' common cost λ.
    divergence: D_φ(p*‖q); kl: KL(p*‖q); dead_mass: Σ q_z over dead answers; min_surviving_q:
    the smallest q_z that survives; residual: max(|g_z − λ| on survivors, λ − g_z(0) on dead
    answers if positive, |Σ p − 1|); steps/t_final: integration steps and θ-time reached."""

    p: np.ndarray
    lam: np.ndarray
    dead: np.ndarray
    divergence: np.ndarray
    kl: np.ndarray
    dead_mass: np.ndarray
    min_surviving_q: np.ndarray
    residual: np.ndarray
    steps: int
    t_final: np.ndarray
    converged: bool
    baseline: str = "none"
    table_monotone: bool = True
    method: np.ndarray | None = None          # per prompt: "kkt", "flow" or "kkt-branch" (mean_field_equilibrium)
    converged_rows: np.ndarray | None = None  # per prompt: verified stationary (residual within tolerance)

    @property
    def kl_mean(self) -> float:
        return float(np.mean(self.kl))

    @property
    def divergence_mean(self) -> float:
        return float(np.mean(self.divergence))


def _woodbury_step(h, f, p, a, e):
    """Solve (I − h J) Δ = h f row-wise, J = diag(a) − a pᵀ + p eᵀ (the exact Jacobian of θ̇)."""
    D = 1.0 - h[:, None] * a
    y = h[:, None] * f / D
    Z1 = h[:, None] * a / D        # columns of D⁻¹U, U = [h a, −h p], V = [p, e]
    Z2 = -h[:, None] * p / D
    # C = I + Vᵀ D⁻¹ U  (2 × 2 per row)
    c11 = 1.0 + np.sum(p * Z1, axis=1)
    c12 = np.sum(p * Z2, axis=1)
    c21 = np.sum(e * Z1, axis=1)
    c22 = 1.0 + np.sum(e * Z2, axis=1)
    r1 = np.sum(p * y, axis=1)
    r2 = np.sum(e * y, axis=1)
    det = c11 * c22 - c12 * c21
    det = np.where(det == 0, 1e-300, det)
    s1 = (c22 * r1 - c12 * r2) / det
    s2 = (c11 * r2 - c21 * r1) / det
    return y - Z1 * s1[:, None] - Z2 * s2[:, None]


def _flow(ev, scale, rq, live, p):
    """θ̇ = f, the Jacobian's pieces (a, e) and g, for softmax policies p (rows)."""
    G, dG = ev(p)
    g = np.where(live, scale * (G - rq), 0.0)
    dg = np.where(live, scale * dG, 0.0)
    gbar = np.sum(p * g, axis=1, keepdims=True)
    f = -p * (g - gbar)
    a = -p * (g - gbar + p * dg)
    c = np.sum(p * (g + p * dg), axis=1, keepdims=True)
    e = p * (g + p * dg - c)
    return f, a, e, g, gbar[:, 0]


SMALL_P = 1e-3     # answers below this mass may take 5× longer steps in θ, below SMALL_P² 20× (they only decay
                   # or grow, slowly: T is nearly constant there)


def mean_field_equilibrium(values, q, reward="kl", *, baseline: str = "none", max_step: float = 0.25,
                           t_max: float = 1e15, max_steps: int = MF_MAX_STEPS) -> MeanField:
    """Integrate θ̇_k = −p_k (g_k − Σ_j p_j g_j), g_z = T_b(p_z) − r(q_z), from θ = 0 and polish.

    Where T_b is nondecreasing (every plug-in, digamma and default table) the answer is instead the
    unique stationary point of the convex potential (``kkt_equilibrium``, which says why).

    Linearly implicit Euler (exact Jacobian, diagonal + rank 2, solved by Woodbury): L-stable for
    the survivors' fast relaxation. Steps are limited to |Δθ_z| ≤ ``max_step`` for answers with
    p_z ≥ SMALL_P (5×, and 20× below SMALL_P²) and grow at most 2× per step, so θ-time grows
    geometrically along the algebraically dying answers (θ_z ≈ −log t). Integration stops when
    every answer is settled (|g_z − ḡ| ≤ 1e-9 (1 + |ḡ|)) or dead (p_z ≤ DEAD_P with cost above ḡ
    at p_z and at 0); then Newton on {T_b(p_z) − r(q_z) = λ on survivors, Σ p = 1}; dead answers
    are checked to have t_1 − r(q_z) ≥ λ (the residual reports any violation). Identical target
    rows are solved once. T_b: ``effective_table(values, baseline)``.

    Step control: a step must not raise the potential Φ the flow descends (else it is cut 4×), so
    the step is not limited by an unstable-looking diagonal of the Jacobian where T_b′ < 0.
    If the flow does not settle (heavy tails with a T_b that decreases at large p: one answer near
    p = 1 while answers that must revive sit at p ~ 1e-18 and need θ-time ~1/p), the result is the
    stationary point on the increasing branch of T_b from p = 0 (``_branch_equilibrium``: stable,
    verified), ``method`` "kkt-branch". A row that verifies neither way has ``converged_rows`` False
    and ``converged`` is False: the reported p is then the last state, not an equilibrium."""
    reward = _reward(reward)
    t = _table(values)
    K = t.size
    s_tab = effective_table(t, baseline)
    scale = baseline_scale(baseline, K)
    ev = MeanEvaluator(s_tab)
    q = validate_targets(q)
    uq, inverse = unique_rows(q)
    live = support_mask(reward, uq)
    rq = np.where(live, _reward_at(reward, np.where(live, uq, 1.0)), 0.0)
    U, M = uq.shape
    theta = np.where(live, 0.0, -np.inf)
    time = np.zeros(U)
    h = np.full(U, np.nan)
    active = np.ones(U, dtype=bool)
    steps = 0
    cost0 = scale * (s_tab[0] - rq)   # cost of an answer at p = 0 (T_b(0) = s_1 = t_1)
    u_tab = np.concatenate([[0.0], np.cumsum(s_tab)]) / K   # ∫₀^p T_b = Σ_j u_j B^K_j(p)
    ev_u = MeanEvaluator(u_tab)

    def pot(p, rows):
        """Φ(p) = scale·Σ_z [∫₀^{p_z} T_b − r(q_z) p_z] per row and a rounding tolerance for comparing it."""
        lv = live[rows]
        terms = np.where(lv, ev_u(p)[0] - rq[rows] * p, 0.0)
        return scale * terms.sum(axis=1), 1e-13 * (1.0 + scale * np.abs(terms).sum(axis=1))

    grid = increasing_mean_grid(ev)
    if grid is not None:
        # convex potential: its unique KKT point (kkt_equilibrium) is the equilibrium; no integration
        theta = np.where(live, np.log(np.maximum(kkt_equilibrium(grid, float(s_tab[0]), rq, live), 1e-300)), -np.inf)
        active[:] = False
    for steps in range(1, max_steps + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        th = theta[idx]
        p = softmax(th)
        f, a, e, g, gbar = _flow(ev, scale, rq[idx], live[idx], p)
        lv = live[idx]
        settled = np.abs(g - gbar[:, None]) <= SETTLED_TOL * (1 + np.abs(gbar[:, None]))
        dying = (p <= DEAD_P) & (g > gbar[:, None]) & (cost0[idx] > gbar[:, None])
        done = np.all(settled | dying | ~lv, axis=1) | (time[idx] >= t_max)
        if np.any(done):
            active[idx[done]] = False
            keep = ~done
            idx, th, p, f, a, e = idx[keep], th[keep], p[keep], f[keep], a[keep], e[keep]
            if idx.size == 0:
                break
        fin = np.isfinite(th)
        limit = np.where(p >= SMALL_P, max_step, np.where(p >= SMALL_P**2, 5 * max_step, 20 * max_step))
        speed = np.max(np.abs(f) / limit, axis=1)
        hi = h[idx]
        hi = np.where(np.isnan(hi), 1.0 / np.maximum(speed, 1e-300), 2.0 * hi)
        hi = np.minimum(hi, np.maximum(t_max - time[idx], 0) + 1.0)
        pz = np.where(fin, p, 0.0)
        a0, e0, f0 = np.where(fin, a, 0.0), np.where(fin, e, 0.0), np.where(fin, f, 0.0)
        phi0, tol0 = pot(p, idx)
        for _ in range(40):
            for _ in range(30):
                d = _woodbury_step(hi, f0, pz, a0, e0)
                d = np.where(fin, d, 0.0)
                shift = np.sum(pz * d, axis=1, keepdims=True)
                big = np.max(np.where(fin, np.abs(d - shift) / limit, 0.0), axis=1)
                over = ~(big <= 1.0)
                if not np.any(over):
                    break
                hi = np.where(over, hi * 0.9 / np.where(np.isfinite(big), np.maximum(big, 1e-300), 1e300), hi)
            # the flow descends Φ: a step that raises it has crossed an unstable direction (T_b′ < 0
            # where the linearisation misleads); shorten it
            phi1, _ = pot(softmax(th + d), idx)
            up = ~(phi1 <= phi0 + tol0)
            if not np.any(up):
                break
            hi = np.where(up, hi * 0.25, hi)
        theta[idx] = th + d
        theta[idx] -= np.max(theta[idx], axis=1, keepdims=True)
        time[idx] += hi
        h[idx] = hi
    p = softmax(theta)
    G = ev(p)[0]
    g = np.where(live, scale * (G - rq), 0.0)
    gbar = np.sum(p * g, axis=1)
    dead = live & (p <= DEAD_P) & (g > gbar[:, None]) & (cost0 > gbar[:, None])
    surv = live & ~dead
    ps, lam = _polish(ev, rq, surv, p)
    # verification with the pmf-matrix evaluation (not the Chebyshev series used to get there)
    Gs = table_mean_derivatives(s_tab, ps, 0)[0]
    res_s = np.max(np.where(surv, np.abs(Gs - rq - lam[:, None]), 0.0), axis=1)
    res_d = np.max(np.where(dead, np.maximum(lam[:, None] - (s_tab[0] - rq), 0.0), 0.0), axis=1)
    res = np.maximum(np.maximum(res_s, res_d), np.abs(ps.sum(axis=1) - 1.0))
    tol = 1e-9 * (1.0 + np.abs(lam))
    ok = (res <= tol) & np.all(np.isfinite(ps), axis=1) & ~active
    method = np.full(U, "kkt" if grid is not None else "flow", dtype=object)
    if grid is None and not np.all(ok):
        # the flow did not settle (e.g. one answer near p = 1 on a decreasing branch of T_b while others
        # that must revive sit at p ~ 1e-18: they need θ-time ~ 1/p): the stable stationary point on
        # the increasing branch of T_b from p = 0, where one exists
        bad = np.flatnonzero(~ok)
        br = _branch_equilibrium(ev, s_tab, rq[bad], live[bad])
        if br is not None:
            bp, blam, bdead, bres, bok = br
            for j, i in enumerate(bad):
                if bok[j]:
                    ps[i], lam[i], dead[i], res[i], ok[i] = bp[j], blam[j], bdead[j], bres[j], True
                    method[i] = "kkt-branch"
            surv = live & ~dead
    div = bregman_divergence(reward, ps, uq)
    klv = kl_divergence(ps, uq)
    dead_mass = np.sum(np.where(dead | ~live, uq, 0.0), axis=1)
    min_q = np.min(np.where(surv, uq, np.inf), axis=1)
    return MeanField(
        p=ps[inverse], lam=lam[inverse], dead=(dead | ~live)[inverse], divergence=div[inverse], kl=klv[inverse],
        dead_mass=dead_mass[inverse], min_surviving_q=min_q[inverse], residual=res[inverse], steps=steps,
        t_final=time[inverse], converged=bool(np.all(ok)), baseline=baseline,
        table_monotone=bool(np.all(np.diff(s_tab) >= 0)), method=method[inverse].astype(str),
        converged_rows=ok[inverse],
    )


def _branch_equilibrium(ev, s_tab, rq, live):
    """KKT on the increasing branch [0, p_peak] of T_b (p_peak: where T_b first decreases), Newton-polished.

    Every survivor then has T_b′(p_z) ≥ 0, so Φ is locally strictly convex there: a stable stationary
    point of the flow. Returns (p, λ, dead, residual, ok) per row, ok where it verifies (residual within
    1e-9 (1 + |λ|), survivors within the branch, dead answers' cost at p = 0 ≥ λ), or None if T_b has no
    such branch."""
    T = ev(np.exp(KKT_LOG_GRID)[None, :])[0][0]
    down = np.flatnonzero(np.diff(T) < -1e-12 * (1.0 + np.abs(T[1:])))
    if down.size == 0 or down[0] < 2:
        return None
    end = int(down[0]) + 1
    grid = (KKT_LOG_GRID[:end], np.maximum.accumulate(T[:end]))
    p_peak = float(np.exp(KKT_LOG_GRID[end - 1]))
    p0 = kkt_equilibrium(grid, float(s_tab[0]), rq, live)
    dead = live & (p0 <= 0)
    surv = live & ~dead
    ps, lam = _polish(ev, rq, surv, np.where(surv, p0, 0.0))
    Gs = table_mean_derivatives(s_tab, ps, 0)[0]
    res_s = np.max(np.where(surv, np.abs(Gs - rq - lam[:, None]), 0.0), axis=1)
    res_d = np.max(np.where(dead, np.maximum(lam[:, None] - (s_tab[0] - rq), 0.0), 0.0), axis=1)
    res = np.maximum(np.maximum(res_s, res_d), np.abs(ps.sum(axis=1) - 1.0))
    within = np.all(np.where(surv, (ps > 0) & (ps <= p_peak * (1 + 1e-9)), True), axis=1)
    ok = (res <= 1e-9 * (1.0 + np.abs(lam))) & within & np.all(np.isfinite(ps), axis=1)
    return ps, lam, dead, res, ok


KKT_LOG_GRID = np.concatenate([np.linspace(-80.0, -10.0, 401), np.linspace(-10.0, 0.0, 20001)[1:]])


def increasing_mean_grid(ev):
    """(log p grid, T_b on it) when T_b is nondecreasing on the grid (to 1e-12 relative), else None."""
    T = ev(np.exp(KKT_LOG_GRID)[None, :])[0][0]
    if np.any(np.diff(T) < -1e-12 * (1.0 + np.abs(T[1:]))):
        return None
    return KKT_LOG_GRID, np.maximum.accumulate(T)


def kkt_equilibrium(grid, t1: float, rq, live, iters: int = 200):
    """The stationary point for a nondecreasing T_b: p_z = T_b⁻¹(r(q_z) + λ), 0 where r(q_z) + λ ≤ t_1
    = T_b(0), Σ p = 1 (bisection on λ, T_b⁻¹ by interpolation on the log-p grid; then Newton).

    The expected dynamics is the gradient flow θ̇ = −∇_θ Φ of Φ(p) = Σ_z [∫₀^{p_z} T_b − r(q_z) p_z]
    (∂Φ/∂θ_k = p_k (g_k − ḡ)). Φ is convex on the simplex when T_b is nondecreasing, so this KKT
    point is its unique minimiser and the only stationary point at which every answer's cost
    gradient points the right way. Caveat (measured): with many rare answers (zipf:1.5:100 at
    K = 8) the exact flow from uniform starves a rare survivor for astronomically long — the many
    slowly dying answers (p ~ 1/(gap·t)) push the leader's θ up like log t and the survivor
    decays like c/t with them — so a finite-horizon integration reports a horizon-dependent state
    (plug-in K = 8, zipf:1.5:100: KL 0.881 at t = 1e8 with LSODA, against 0.497 here). coefgen
    reports this stationary point; the stochastic runs show what finite training reaches."""
    lp, T = grid
    rqf = np.where(live, rq, np.nan)

    def p_of(lam):
        y = rqf + lam[:, None]
        p = np.exp(np.interp(np.nan_to_num(y, nan=-np.inf), T, lp, left=-np.inf, right=float(lp[-1])))
        return np.where(live & (y > t1), p, 0.0)

    lo = t1 - np.nanmax(rqf, axis=1) - 1e-12
    hi = T[-1] - np.nanmin(rqf, axis=1) + 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = p_of(mid).sum(axis=1) < 1.0
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    p = p_of(0.5 * (lo + hi))
    return p / p.sum(axis=1, keepdims=True)


def _polish(ev, rq, surv, p0, iters: int = 60):
    """Newton on {T_b(p_z) − rq_z = λ (z ∈ survivors), Σ p = 1}, rows vectorised; dead answers p = 0."""
    p = np.where(surv, p0, 0.0)
    p = p / p.sum(axis=1, keepdims=True)
    G, dG = ev(p)
    lam = np.sum(p * np.where(surv, G - rq, 0.0), axis=1)
    for _ in range(iters):
        G, dG = ev(p)
        F = np.where(surv, G - rq - lam[:, None], 0.0)
        s = 1.0 - p.sum(axis=1)
        scale = 1.0 + np.abs(lam)
        if np.all(np.max(np.abs(F), axis=1) <= NEWTON_TOL * scale) and np.all(np.abs(s) <= 1e-15):
            break
        d = np.where(surv, dG, np.inf)
        d = np.where(surv & (np.abs(d) < 1e-300), 1e-300, d)
        inv = np.where(surv, 1.0 / d, 0.0)
        sinv = np.sum(inv, axis=1)
        dlam = (s + np.sum(F * inv, axis=1)) / np.where(sinv == 0, 1e-300, sinv)
        dp = np.where(surv, (dlam[:, None] - F) * inv, 0.0)
        # damp: keep survivors strictly positive (at most a 90% cut per step)
        ratio = np.where(surv & (dp < 0), -dp / np.maximum(p, 1e-300), 0.0)
        alpha = np.minimum(1.0, 0.9 / np.maximum(np.max(ratio, axis=1), 1e-300))
        p = np.where(surv, p + alpha[:, None] * dp, 0.0)
        lam = lam + alpha * dlam
    return p, lam


# --------------------------------------------------------------------------------------
# exact and expected gradients


def exact_gradient(reward, p, q):
    """∇_θ D_φ(p‖q) = p ⊙ (Δ − Σ p Δ), Δ_z = r(p_z) − r(q_z) (rows; answers outside the support get 0)."""
    reward = _reward(reward)
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    live = support_mask(reward, q) & (p > 0)
    delta = np.where(live, _reward_at(reward, np.where(live, p, 1.0)) - _reward_at(reward, np.where(live, q, 1.0)), 0.0)
    return p * (delta - np.sum(p * delta, axis=-1, keepdims=True))


def expected_gradient(values, reward, p, q, baseline: str = "none"):
    """E[ĝ] in closed form for baselines none / loo / mean: p ⊙ (g − Σ p g), g = T_b(p) − r(q)."""
    reward = _reward(reward)
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    live = support_mask(reward, q)
    rq = np.where(live, _reward_at(reward, np.where(live, q, 1.0)), 0.0)
    g = np.where(live, effective_mean(values, p, baseline)[0] - rq, 0.0)
    g = g * baseline_scale(baseline, _table(values).size)
    return p * (g - np.sum(p * g, axis=-1, keepdims=True))


def _advantages(t, n, rq, baseline):
    """Per-answer advantage (P, M) of each sample with that answer, from counts n (P, M)."""
    K = t.size
    pos = n > 0
    a = np.where(pos, t[np.maximum(n, 1) - 1] - rq, 0.0)
    S = np.sum(n * a, axis=1, keepdims=True)
    if baseline == "loo":
        return (K * a - S) / (K - 1)
    if baseline == "mean":
        return a - S / K
    if baseline == "none":
        return a
    mu = S / K
    var = np.sum(np.where(pos, n * (a - mu) ** 2, 0.0), axis=1, keepdims=True) / (K - 1)
    return (a - mu) / (np.sqrt(var) + GRPO_STD_EPS)


def sample_gradient(t, p, rq, baseline, rng):
    """One REINFORCE estimate per row: Σ_samples adv_i (e_{z_i} − p)/K with K multinomial samples."""
    K = t.size
    n = rng.multinomial(K, p)
    adv = _advantages(t, n, rq, baseline)
    w = np.where(n > 0, n * adv, 0.0)
    return (w - p * np.sum(w, axis=1, keepdims=True)) / K


@dataclass
class GradientStats:
    """Measured gradient at fixed θ against the exact ∇D_φ (all norms Euclidean over every prompt's θ).

    relative_bias = ‖E ĝ − ∇D‖/‖∇D‖ (its MC standard error beside it); relative_variance =
    E‖ĝ − E ĝ‖²/‖∇D‖² per prompt, averaged (trace of the covariance); expected: the closed-form E ĝ
    (None for grpo); cosine = cos(E ĝ, ∇D), the direction alone (GRPO's 1/std rescales ĝ)."""

    mean: np.ndarray
    stderr: np.ndarray
    exact: np.ndarray
    expected: np.ndarray | None
    relative_bias: float
    relative_bias_stderr: float
    relative_variance: float
    variance: np.ndarray
    n_draws: int
    cosine: float = float("nan")   # cos(E ĝ, ∇D): direction only (GRPO's std normalisation rescales ĝ)


def gradient_bias_variance(values, q, theta, K=None, reward="kl", baseline: str = "loo", n_draws: int = 2000,
                           seed: int = 0) -> GradientStats:
    """Monte Carlo mean and variance of the stochastic gradient at fixed θ (P, M), against ∇D_φ(p‖q)."""
    reward = _reward(reward)
    t = _table(values)
    if K is not None and K != t.size:
        raise InputError(f"K = {K} but the table has {t.size} entries")
    _check_baseline(baseline)
    q = validate_targets(q)
    theta = np.asarray(theta, dtype=float)
    if theta.shape != q.shape:
        raise InputError(f"theta shape {theta.shape} differs from the targets' {q.shape}")
    if not isinstance(n_draws, int) or n_draws < 2:
        raise InputError("n_draws must be an integer >= 2")
    live = support_mask(reward, q)
    rq = np.where(live, _reward_at(reward, np.where(live, q, 1.0)), 0.0)
    p = softmax(np.where(live, theta, -np.inf))
    rng = np.random.default_rng(seed)
    P, M = q.shape
    s1 = np.zeros((P, M))
    s2 = np.zeros((P, M))
    per = max(1, min(n_draws, MAX_PM // max(P * M, 1)))
    done = 0
    while done < n_draws:
        b = min(per, n_draws - done)
        pp = np.repeat(p, b, axis=0)
        g = sample_gradient(t, pp, np.repeat(rq, b, axis=0), baseline, rng).reshape(P, b, M)
        s1 += g.sum(axis=1)
        s2 += (g * g).sum(axis=1)
        done += b
    mean = s1 / n_draws
    var = np.maximum(s2 / n_draws - mean * mean, 0.0) * n_draws / (n_draws - 1)
    stderr = np.sqrt(var / n_draws)
    exact = exact_gradient(reward, p, q)
    expected = expected_gradient(t, reward, p, q, baseline) if baseline != "grpo" else None
    norm = float(np.linalg.norm(exact))
    diff = mean - exact
    rb = float(np.linalg.norm(diff)) / norm if norm > 0 else math.inf
    # delta method: sd of ‖diff‖ ≈ sqrt(Σ diff² se²)/‖diff‖
    dn = float(np.linalg.norm(diff))
    rb_se = (float(np.sqrt(np.sum(diff**2 * stderr**2))) / dn / norm) if dn > 0 and norm > 0 else 0.0
    var_row = var.sum(axis=1)
    rv = float(np.mean(var_row / np.maximum(np.sum(exact**2, axis=1), 1e-300)))
    mn = float(np.linalg.norm(mean))
    cos = float(np.sum(mean * exact)) / (mn * norm) if mn > 0 and norm > 0 else float("nan")
    return GradientStats(mean=mean, stderr=stderr, exact=exact, expected=expected, relative_bias=rb,
                         relative_bias_stderr=rb_se, relative_variance=rv, variance=var_row, n_draws=n_draws,
                         cosine=cos)


# --------------------------------------------------------------------------------------
# stochastic runs


def _check_baseline(baseline):
    if baseline not in BASELINES:
        raise InputError(f"baseline {baseline!r}: choose one of {', '.join(BASELINES)}")


def record_grid(steps: int, points: int = 120) -> np.ndarray:
    """Steps at which a run records KL: 0, 1, …, geometric up to ``steps`` (inclusive), unique."""
    if steps <= 0:
        return np.array([0])
    g = np.unique(np.round(np.geomspace(1, steps, max(points - 1, 2))).astype(int))
    return np.concatenate([[0], g])


@dataclass
class StochasticRun:
    """Record of a run: KL(p_t‖q) mean over prompts and its 5%/95% quantiles at ``steps``.

    final_kl (P,): per prompt at the last step; p_final; p_average: mean of p_t over steps
    ≥ average_from (None if not asked); gradient: [(step, GradientStats)] at checkpoints."""

    steps: np.ndarray
    kl_mean: np.ndarray
    kl_q05: np.ndarray
    kl_q95: np.ndarray
    divergence_mean: np.ndarray
    final_kl: np.ndarray
    p_final: np.ndarray
    p_average: np.ndarray | None
    lr: float
    baseline: str
    optimizer: str
    seed: int
    gradient: list = field(default_factory=list)
    tail_kl: np.ndarray | None = None   # (P,) per prompt: mean of KL(p_t‖q) over steps ≥ tail_from (None if not asked)
    tail_from: int | None = None
    tail_kl_early: np.ndarray | None = None   # the same over the first and the second half of the tail: a drift
    tail_kl_late: np.ndarray | None = None    # between them says the run has not reached its stationary state

    def steps_to(self, eps: float):
        """First recorded step where the mean KL ≤ eps, or None."""
        hit = np.flatnonzero(self.kl_mean <= eps)
        return int(self.steps[hit[0]]) if hit.size else None

    def steps_to_stay(self, eps: float):
        """First recorded step from which the mean KL stays ≤ eps to the end of the run, or None.

        (KL often dips below eps on the way from uniform and rises again as rare answers die.)"""
        above = np.flatnonzero(~(self.kl_mean <= eps))
        if above.size == 0:
            return int(self.steps[0])
        if above[-1] == self.kl_mean.size - 1:
            return None
        return int(self.steps[above[-1] + 1])


def stochastic_run(values, q, *, steps: int, lr: float, baseline: str = "loo", optimizer: str = "sgd", seed: int = 0,
                   reward="kl", record=120, average_from: int | None = None, gradient_checkpoints=(),
                   gradient_draws: int = 500, progress=None, tail_from: int | None = None) -> StochasticRun:
    """Play the game: per step and prompt, K samples (multinomial counts n), each sample of answer z
    costs a_z = t[n_z] − r(q_z); ĝ = Σ_samples adv_i (e_{z_i} − p)/K; θ ← θ − lr·ĝ (SGD) or Adam.

    ``record``: number of (geometric) record points or an explicit increasing list of steps.
    ``progress``: optional callable(steps_done) for a progress bar. ``tail_from``: also average each
    prompt's KL over steps ≥ tail_from (at most ~200 evenly spaced steps): the long-run KL of the run,
    ``tail_kl``. Same seed ⇒ identical result."""
    reward = _reward(reward)
    t = _table(values)
    q = validate_targets(q)
    _check_baseline(baseline)
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise InputError(f"steps must be a non-negative integer, got {steps!r}")
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise InputError(f"learning rate must be finite and > 0, got {lr!r}")
    grid = record_grid(steps, record) if isinstance(record, (int, np.integer)) else np.unique(np.asarray(record, int))
    grid = grid[(grid >= 0) & (grid <= steps)]
    live = support_mask(reward, q)
    rq = np.where(live, _reward_at(reward, np.where(live, q, 1.0)), 0.0)
    theta = np.where(live, 0.0, -np.inf)
    rng = np.random.default_rng(seed)
    P, M = q.shape
    kl_mean, q05, q95, dmean = [], [], [], []
    checkpoints = set(int(s) for s in gradient_checkpoints)
    grads = []
    m1 = np.zeros((P, M)) if optimizer == "adam" else None
    m2 = np.zeros((P, M)) if optimizer == "adam" else None
    avg = np.zeros((P, M)) if average_from is not None else None
    n_avg = 0
    b1, b2 = ADAM_BETAS
    gi = 0
    tail_sum, n_tail = np.zeros(P), 0
    late_sum, n_late = np.zeros(P), 0
    if tail_from is not None:
        tail_from = int(min(max(tail_from, 0), steps))
        stride = max(1, (steps - tail_from) // 200)
    for s in range(steps + 1):
        p = softmax(theta)
        if tail_from is not None and s >= tail_from and (s - tail_from) % stride == 0:
            kl_s = kl_divergence(p, q)
            tail_sum += kl_s
            n_tail += 1
            if 2 * (s - tail_from) >= steps - tail_from:
                late_sum += kl_s
                n_late += 1
        if gi < grid.size and grid[gi] == s:
            kl = kl_divergence(p, q)
            kl_mean.append(float(np.mean(kl)))
            lo, hi = np.quantile(kl, [0.05, 0.95])
            q05.append(float(lo))
            q95.append(float(hi))
            dmean.append(float(np.mean(bregman_divergence(reward, p, q))))
            gi += 1
        if s in checkpoints:
            gs = gradient_bias_variance(t, q, theta, None, reward, baseline, gradient_draws, seed=seed + 1_000_003 * (s + 1))
            grads.append((s, gs))
        if avg is not None and s >= average_from:
            avg += p
            n_avg += 1
        if s == steps:
            break
        g = sample_gradient(t, p, rq, baseline, rng)
        if optimizer == "sgd":
            theta = theta - lr * g
        else:
            m1 = b1 * m1 + (1 - b1) * g
            m2 = b2 * m2 + (1 - b2) * g * g
            mh = m1 / (1 - b1 ** (s + 1))
            vh = m2 / (1 - b2 ** (s + 1))
            theta = theta - lr * mh / (np.sqrt(vh) + ADAM_EPS)
        theta = theta - np.max(theta, axis=1, keepdims=True)
        if progress is not None and (s + 1) % 100 == 0:
            progress(100)
    if progress is not None and steps % 100:
        progress(steps % 100)
    return StochasticRun(
        steps=grid.copy(), kl_mean=np.array(kl_mean), kl_q05=np.array(q05), kl_q95=np.array(q95),
        divergence_mean=np.array(dmean), final_kl=kl_divergence(p, q), p_final=p,
        p_average=(avg / n_avg if avg is not None and n_avg else None), lr=lr, baseline=baseline,
        optimizer=optimizer, seed=seed, gradient=grads,
        tail_kl=(tail_sum / n_tail if n_tail else None), tail_from=tail_from,
        tail_kl_early=((tail_sum - late_sum) / (n_tail - n_late) if n_tail > n_late else None),
        tail_kl_late=(late_sum / n_late if n_late else None),
    )
