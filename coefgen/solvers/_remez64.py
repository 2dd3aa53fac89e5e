"""Float64 barycentric Remez (levelled-error formulation) for min_P sup_[0,1] |P − f|.

Internal helper of :mod:`coefgen.solvers.minimax`. P has degree ≤ K and P(0) = 0; the
reference x_0 < … < x_K = 1 lies in (0, 1]. On a reference, the polynomial through
(0, 0) and (x_j, f(x_j) + σ_j h), σ_j = (−1)^j, has degree ≤ K iff Σ w_j y_j = 0 over the
K + 2 nodes {0, x_0..x_K} (w the barycentric weights), which fixes h. The polynomial is
never expanded in any basis: it is always evaluated by the barycentric formula.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 21  # matrix entries per evaluation block


def bary_weights(t: np.ndarray) -> np.ndarray:
    """Barycentric weights of sorted distinct nodes t, scaled so max |w| = 1 (log form)."""
    n = len(t)
    diff = t[:, None] - t[None, :]
    np.fill_diagonal(diff, 1.0)
    lw = -np.sum(np.log(np.abs(diff)), axis=1)
    sign = np.where((n - 1 - np.arange(n)) % 2 == 0, 1.0, -1.0)
    return sign * np.exp(lw - lw.max())


def bary_eval(x, t, w, y, deriv: int = 0):
    """P(x) (and P'(x), P''(x) if deriv ≥ 1, 2) of the interpolant (t, y) with weights w.

    Sums S_k = Σ w_j d_j^(k+1), T_k = Σ w_j y_j d_j^(k+1) (d_j = 1/(x − t_j)) by BLAS
    products; then P = T0/S0, P' = (P S1 − T1)/S0, P''/2 = (P' S1 − P S2 + T2)/S0
    (Schneider–Werner). Points equal to a node get the node value (no derivatives)."""
    x = np.asarray(x, dtype=float)
    m = len(x)
    out = [np.empty(m) for _ in range(deriv + 1)]
    wy = np.stack((w, w * y), axis=1)
    step = max(1, _CHUNK // max(1, len(t)))
    for s in range(0, m, step):
        xs = x[s:s + step]
        d = np.subtract.outer(xs, t)
        hit = d == 0
        anyhit = hit.any(axis=1)
        if anyhit.any():
            d[hit] = 1.0
        np.reciprocal(d, out=d)
        st0 = d @ wy
        p = st0[:, 1] / st0[:, 0]
        if anyhit.any():
            rows = np.nonzero(anyhit)[0]
            cols = hit[rows].argmax(axis=1)
            p[rows] = y[cols]
        out[0][s:s + step] = p
        if deriv >= 1:
            d2 = d * d
            st1 = d2 @ wy
            p1 = (p * st1[:, 0] - st1[:, 1]) / st0[:, 0]
            out[1][s:s + step] = p1
            if deriv >= 2:
                d2 *= d
                st2 = d2 @ wy
                out[2][s:s + step] = 2.0 * (p1 * st1[:, 0] - p * st2[:, 0] + st2[:, 1]) / st0[:, 0]
    return out if deriv else out[0]


def levelled(reward, x: np.ndarray):
    """Levelled interpolant on the reference x, in the q-form P = p·q.

    q (degree ≤ K − 1) takes the values (f(x_j) + σ_j h)/x_j at the K + 1 reference
    points; the barycentric interpolant of K + 1 values has degree ≤ K − 1 iff
    Σ w_j q_j = 0, which fixes h. Mathematically the same as the node set {0, x} with
    P(0) = 0, but far better conditioned (0 sits very close to x_0). Returns (x, w, q, h)."""
    w = bary_weights(x)
    fx = reward.f(x)
    sig = np.where(np.arange(len(x)) % 2 == 0, 1.0, -1.0)
    h = -np.dot(w, fx / x) / np.dot(w, sig / x)
    return x, w, (fx + sig * h) / x, h


def rerepresent(x, t, w, y):
    """The same q on the K midpoints of the reference (away from the extrema)."""
    u = 0.5 * (x[:-1] + x[1:])
    v = bary_eval(u, t, w, y)
    return u, bary_weights(u), v


def initial_reference(K: int, alpha: float = 0.41) -> np.ndarray:
    """Chebyshev-like points in √p: p_j = sin²(π(j + α)/(2(K + α))), j = 0..K (last = 1).

    α sets how close x_0 comes to 0 (p_0 ≈ π²α²/(4K²)); α ≈ 0.41 fits kl."""
    j = np.arange(K + 1)
    p = np.sin(np.pi * (j + alpha) / (2 * (K + alpha))) ** 2
    p[-1] = 1.0
    return p


def reward_alpha(reward) -> float:
    """Heuristic α of :func:`initial_reference` for a reward (fit on kl and alpha:a)."""
    a = getattr(reward, "a", None)
    if a is None:
        return 0.41
    return float(min(0.75, max(0.2, 0.41 * float(a) ** 0.4)))


def _error(reward, xs, t, w, y, deriv=0):
    """e = P − f (and e', e'') with P = p·q, q the interpolant (t, w, y)."""
    vals = bary_eval(xs, t, w, y, deriv)
    if deriv == 0:
        return xs * vals - reward.f(xs)
    q = vals
    out = [xs * q[0] - reward.f(xs), q[0] + xs * q[1] - reward.f_derivative(xs, 1)]
    if deriv >= 2:
        out.append(2 * q[1] + xs * q[2] - reward.f_derivative(xs, 2))
    return out


def _grid(x: np.ndarray, nsub: int = 8) -> np.ndarray:
    """Sample points: the reference, nsub − 1 points inside each gap, a geometric fan below x_0."""
    fr = (1 - np.cos(np.pi * np.arange(1, nsub) / nsub)) / 2
    lo = x[:-1, None] + (x[1:] - x[:-1])[:, None] * fr[None, :]
    fan = x[0] * np.geomspace(1e-9, 1.0, 48)[:-1]
    g = np.concatenate((fan, x, lo.ravel()))
    g = np.unique(g)
    return g[(g > 0) & (g <= 1)]


def _select(vals: np.ndarray, n: int):
    """Indices of n alternating extrema: one max-|e| per sign run, window of n runs."""
    sgn = np.sign(vals)
    sgn[sgn == 0] = 1
    brk = np.nonzero(np.diff(sgn))[0] + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [len(vals)]))
    idx = np.array([s + np.argmax(np.abs(vals[s:e])) for s, e in zip(starts, ends)])
    if len(idx) < n:
        return None
    if len(idx) > n:
        a = np.abs(vals[idx])
        # window of n consecutive runs with the largest minimum
        from numpy.lib.stride_tricks import sliding_window_view

        mins = sliding_window_view(a, n).min(axis=1)
        best = int(np.argmax(mins))
        idx = idx[best:best + n]
    return idx


def refine_extrema(reward, g, gi, t, w, y, iters: int = 8):
    """Safeguarded Newton on e' from grid maxima g[gi], bracketed by the grid neighbours."""
    x = g[gi].copy()
    lo = g[np.maximum(gi - 1, 0)].copy()
    hi = g[np.minimum(gi + 1, len(g) - 1)].copy()
    at_end = gi == len(g) - 1  # p = 1 stays an endpoint candidate
    e0 = _error(reward, x, t, w, y)
    s = np.sign(e0)
    active = ~at_end
    for _ in range(iters):
        if not active.any():
            break
        xa = x[active]
        e, e1, e2 = _error(reward, xa, t, w, y, 2)
        sa = s[active]
        # maximise s·e: s·e' > 0 → move right
        right = sa * e1 > 0
        la, ha = lo[active], hi[active]
        la = np.where(right, xa, la)
        ha = np.where(right, ha, xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = xa - e1 / e2
        bad = ~np.isfinite(xn) | (xn <= la) | (xn >= ha) | (sa * e2 >= 0)
        xn = np.where(bad, 0.5 * (la + ha), xn)
        conv = np.abs(xn - xa) <= 1e-13 * (ha - la)
        lo[active], hi[active], x[active] = la, ha, xn
        idx = np.nonzero(active)[0]
        active[idx[conv]] = False
    # endpoint candidate: compare with the interior maximum of its run (keep the larger)
    ev = _error(reward, x, t, w, y)
    eg = _error(reward, g[gi], t, w, y)
    worse = np.abs(ev) < np.abs(eg)
    x[worse] = g[gi][worse]
    return x


def remez64(reward, K: int, x0=None, maxit: int = 60, tol: float = 1e-11):
    """Float64 Remez. Returns (reference, h, history of relative spreads)."""
    x = initial_reference(K, reward_alpha(reward)) if x0 is None else np.asarray(x0, dtype=float)
    best = None
    hist = []
    stall = 0
    for it in range(maxit):
        t, w, y, h = levelled(reward, x)
        t, w, y = rerepresent(x, t, w, y)
        g = _grid(x)
        ev = _error(reward, g, t, w, y)
        gi = _select(ev, K + 1)
        if gi is None:
            raise RuntimeError("Remez exchange lost alternation")
        xn = refine_extrema(reward, g, gi, t, w, y)
        xn = np.sort(xn)
        xn[-1] = max(xn[-1], 0.0)
        en = _error(reward, xn, t, w, y)
        emax = np.max(np.abs(en))
        spread = (emax - abs(h)) / abs(h)
        hist.append((abs(h), spread))
        if best is None or spread < best[0]:
            if best is not None and best[0] < 1e-7 and spread > 0.1 * best[0]:
                stall += 1  # float noise floor reached: the high-precision steps take over
            else:
                stall = 0
            best = (spread, x.copy())
        else:
            stall += 1
        if np.any(np.diff(xn) <= 0) or xn[0] <= 0:
            break
        x = xn
        if spread < tol or stall >= 2:
            break
    return best[1], hist
