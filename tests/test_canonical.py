"""The coefgen command pins numpy's and OpenBLAS's kernels: bytes do not depend on the CPU path.

Each case runs the real console entry in a fresh process under environments that select other
kernels (AVX-512/AVX2 numpy loops, SkylakeX/Haswell OpenBLAS kernels); the pinned command must
write identical bytes. The control runs the same solve with numpy imported first (so nothing is
pinned) and shows that on this machine the kernels really do change the bytes, i.e. that the
main assertion has power here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coefgen.canonical import CANONICAL_ENV

# kl aqp: QP data, Clarabel and certification all pass through numpy/OpenBLAS kernels
SOLVE = ["solve", "-d", "kl", "--K", "12", "-e", "aqp", "-o", "-"]
ENTRY = "from coefgen.cli import main; main()"
UNPINNED_ENTRY = "import numpy; from coefgen.cli import main; main()"

KERNEL_ENVS = [
    {},  # whatever this machine picks by default
    {"OPENBLAS_CORETYPE": "SkylakeX", "NPY_DISABLE_CPU_FEATURES": ""},
    {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
]


def _run(entry: str, extra_env: dict) -> bytes:
    env = {k: v for k, v in os.environ.items() if k not in CANONICAL_ENV}
    env.update(extra_env)
    r = subprocess.run([sys.executable, "-c", entry, *SOLVE], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return r.stdout


def test_pinned_command_writes_the_same_bytes_under_every_kernel_choice():
    outs = [_run(ENTRY, e) for e in KERNEL_ENVS]
    assert outs[0] == outs[1] == outs[2]


def test_control_unpinned_kernels_change_the_bytes_on_this_machine():
    a = _run(UNPINNED_ENTRY, {"OPENBLAS_CORETYPE": "Nehalem", "NPY_DISABLE_CPU_FEATURES": CANONICAL_ENV["NPY_DISABLE_CPU_FEATURES"]})
    b = _run(UNPINNED_ENTRY, {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": ""})
    if a == b:
        pytest.skip("this machine's kernels happen to agree on this table: the control has no power here")
    assert a != b
