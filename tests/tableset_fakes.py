"""Stand-ins for modules that other issues deliver (certify, minimax, aqp), used by the
table-set tests only while those modules do not import yet. With the real modules present,
``install`` changes nothing and the tests exercise the real compiler and verifier."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np


def real_compiler_available() -> bool:
    for name in ("coefgen.certify", "coefgen.solvers.minimax"):
        try:
            importlib.import_module(name)
        except ImportError:
            return False
    return True


def _grid_bounds(values, divergence):
    from coefgen.bernstein import table_mean, table_second_moment
    from coefgen.rewards import parse_reward

    p = np.concatenate([np.logspace(-8, -1, 400), np.linspace(0.1, 1, 400)])
    T = table_mean(values, p)
    S = table_second_moment(values, p)
    r = parse_reward(divergence).r(p)
    b = p * (T - r)
    v = np.maximum(p * (S - T * T), 0)
    m = v + b * b / p
    return float(np.max(np.abs(b))), float(np.max(v)), float(np.max(m))


def fake_compile_table(divergence, K, estimator, params=None):
    from coefgen import __version__, compiler
    from coefgen.payload import SCHEMA, seal
    from coefgen.writers import table_id

    reward, K, full = compiler.precheck(divergence, K, estimator, params)
    sol = compiler.solve(reward, K, estimator, full)
    values = [float(v) for v in sol.values]
    bias, var, mse = _grid_bounds(values, reward.name)
    up = lambda x: repr(x * (1 + 1e-9) + 1e-300)  # noqa: E731
    return seal({
        "schema": SCHEMA, "generator_version": __version__,
        "table_id": table_id(reward.name, estimator, compiler.key_params(estimator, full), K),
        "divergence": reward.name, "reward": reward.formula, "K": K, "estimator": estimator,
        "estimator_params": {k: v for k, v in full.items() if v is not None},
        "values": values, "values_exact": list(sol.values_exact), "certified": True,
        "bias_bound": "0" if sol.exact else up(bias), "bias_lower": "0" if sol.exact else repr(bias),
        "variance_bound": up(var), "variance_lower": repr(var), "mse_bound": up(mse), "mse_lower": repr(mse),
        "witness": {}, "certificate_method": "test-fake-grid",
        "minimax_level": "0" if sol.exact else repr(bias / 2), "minimax_level_bracket": ["0", "0"],
    })


def fake_verify_payload(payload, source):
    bias, var, mse = _grid_bounds(payload["values"], payload["divergence"])
    out = []
    if float(payload["variance_bound"]) < var * (1 - 1e-6):
        out.append(f"{source}: variance_bound {payload['variance_bound']} < {var!r}")
    if float(payload["bias_bound"]) < bias - 1e-12:
        out.append(f"{source}: bias_bound {payload['bias_bound']} < {bias!r}")
    return out


def _fake_aqp_module():
    mod = types.ModuleType("coefgen.solvers.aqp")

    def normalize_aqp_params(full):
        tau = full.get("tau", 10)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or tau < 1:
            from coefgen.errors import InputError

            raise InputError(f"tau must be a number >= 1, got {tau!r}")
        return {**full, "tau": int(tau) if float(tau).is_integer() else float(tau)}

    mod.normalize_aqp_params = normalize_aqp_params
    return mod


def install(monkeypatch=None) -> bool:
    """Patch in the fakes where the real modules are missing; True if the real ones are used."""
    import coefgen.compiler
    import coefgen.verify

    try:
        importlib.import_module("coefgen.solvers.aqp")
    except ImportError:
        mod = _fake_aqp_module()
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, "coefgen.solvers.aqp", mod)
        else:
            sys.modules["coefgen.solvers.aqp"] = mod
    if real_compiler_available():
        return True
    for obj, name, fake in ((coefgen.compiler, "compile_table", fake_compile_table),
                            (coefgen.verify, "verify_payload", fake_verify_payload)):
        if monkeypatch is not None:
            monkeypatch.setattr(obj, name, fake)
        else:
            setattr(obj, name, fake)
    return False
