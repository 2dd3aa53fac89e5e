"""BoN quantile rewards (issue 12): bias of log p_≤ estimates from k reference samples.

c = 1 + #{j : r(y′_j) ≤ r(y)} has c − 1 ~ Bin(k, p), p = p_≤(y). Every estimator below is a
table t_1..t_{k+1} (K = k + 1) applied to c:

  clamped   t_c = log(max(c − 1, 1)/k)     BOND-style plug-in: fraction of references ≤ r(y), 0 → 1/k
  vbon      t_c = log(c/(k + 1))           vBoN's (rank + 1)/(k + 1); identical to coefgen's kl plugin
  digamma   t_c = ψ(c) − ψ(k + 1)          coefgen baseline
  aqp       coefgen kl aqp table (tau = 10, the default)
  minimax   coefgen kl minimax table (only where float64 can represent it, K ≤ 24)

Columns: certified sup_p p·|E t_c − log p| and sup_p p·Var(t_c) (coefgen.certify on the float64
values: clamped by certify(), the others as compiled by `coefgen solve`); the unweighted bias
E t_c − log p at p = 0.5, 0.9, 0.99 (exact binomial sums); and the mean bias when the policy
is π_ref or best-of-16 on a continuous reward (p_≤(y) ~ Beta(n, 1), n = 1 or 16):
E[T(F)] − E[log F] = Σ_c t_c C(k, c−1)·n·B(n − 1 + c, k − c + 2) + 1/n; and the equilibrium
error of vBoN-16 training with the table as reward, KL(π_T ‖ π_log) with π_T ∝ π_ref·e^(15·T(F)),
π_log ∝ π_ref·F^15 (coefgen.bon.vbon_equilibrium_kl on uniform:10000: the k references are
fresh each step, so the table's mean T is what the expected gradient sees; offsets cancel).

Run: python bench/bench_bon_quantile.py [k,k,...]   (default 4,8,16,32,63)"""

from __future__ import annotations

import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

N_POLICY = 16


def mean_bias_under_bon(values, n: int) -> float:
    """E_{F ~ Beta(n,1)}[Σ_c t_c B_c(F)] + 1/n (E log F = −1/n), exact Beta integrals."""
    from scipy.special import betaln

    k = len(values) - 1
    total = 0.0
    for c, t in enumerate(values, start=1):
        w = math.exp(math.log(math.comb(k, c - 1)) + math.log(n) + betaln(n + c - 1, k - c + 2))
        total += t * w
    return total + 1.0 / n


def _s(x: float) -> str:
    """Signed, 3 digits; below 1e-14 in size (float64 resolution of these sums) as ~0."""
    return "~0" if abs(x) < 1e-14 else f"{x:+.3g}"


def main() -> int:
    import numpy as np

    from coefgen.bon import clamped_plugin_table, expected_estimate, vbon_equilibrium_kl
    from coefgen.certify import certify
    from coefgen.compiler import compile_table

    ks = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "4,8,16,32,63").split(",")]
    print("| k | estimator | certified sup p·|bias| | certified sup p·Var | bias p=0.5 | bias p=0.9 | bias p=0.99 "
          f"| mean bias, policy pi_ref | mean bias, policy BoN-{N_POLICY} | vBoN-{N_POLICY} equilibrium KL |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for k in ks:
        K = k + 1
        rows = []
        cert = certify(clamped_plugin_table(k), "kl")
        rows.append(("clamped log(max(c-1,1)/k)", clamped_plugin_table(k), cert.bias.upper, cert.variance.upper))
        for est in ["plugin", "digamma", "aqp"] + (["minimax"] if K <= 24 else []):
            payload = compile_table("kl", K, est, {})
            name = {"plugin": "vBoN log(c/(k+1)) = coefgen plugin", "aqp": "coefgen aqp (tau 10)"}.get(est, f"coefgen {est}")
            rows.append((name, np.array(payload["values"]), float(payload["bias_bound"]),
                         float(payload["variance_bound"])))
        p = np.array([0.5, 0.9, 0.99])
        for name, values, b, v in rows:
            bias = expected_estimate(values, p) - np.log(p)
            m1 = mean_bias_under_bon(values, 1)
            mb = mean_bias_under_bon(values, N_POLICY)
            eq = vbon_equilibrium_kl(values, N_POLICY)
            print(f"| {k} | {name} | {b:.3g} | {v:.3g} | {_s(bias[0])} | {_s(bias[1])} | {_s(bias[2])} "
                  f"| {_s(m1)} | {_s(mb)} | {'<1e-14' if eq < 1e-14 else f'{eq:.3g}'} |",
                  flush=True)
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
