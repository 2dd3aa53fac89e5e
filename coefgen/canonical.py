"""Canonical floating point for the compiler: the same table bytes on any x86-64 machine.

numpy picks its ufunc loops (log, exp, log1p, …) and OpenBLAS its matrix kernels by the CPU's
features at run time, and their last bits differ between SSE, AVX2 and AVX-512 machines. A table
file states certified bounds to 17 digits, solver diagnostics and (for aqp) values that pass
through those kernels, so without pinning the same coefgen version writes different bytes on
different machines (measured: 178 of 215 default-set JSON files differed between an AVX2 and an
AVX-512 machine). The ``coefgen`` command therefore pins, before numpy is first imported:

* numpy's dispatch to the x86-64-v2 baseline (``NPY_DISABLE_CPU_FEATURES``),
* OpenBLAS (numpy's and scipy's) to its Nehalem kernels, one thread (``OPENBLAS_CORETYPE``,
  ``OPENBLAS_*NUM_THREADS``),

values every x86-64-v2 machine supports; the cost is small (a cold default-set build within a
few per cent). Bytes are then identical across x86-64 machines for the same versions of coefgen
and of the numeric libraries (``constraints.txt`` pins those for the repo's own make targets).
Other architectures (arm64) use other kernels and may differ in last digits.

Only the command line pins: ``import coefgen.runtime`` in a trainer leaves numpy alone.
"""

from __future__ import annotations

import os
import sys

# numpy >= 2.0 names its x86 dispatch groups X86_V3/X86_V4/AVX512_*; numpy 1.x names single
# features (AVX2, FMA3, AVX512F, …). Names a build does not know are ignored.
_NPY_DISABLE = " ".join([
    "X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR",
    "AVX", "F16C", "FMA3", "AVX2", "AVX512F", "AVX512CD", "AVX512_KNL", "AVX512_KNM", "AVX512_SKX",
    "AVX512_CLX", "AVX512_CNL",
])

CANONICAL_ENV = {
    "NPY_DISABLE_CPU_FEATURES": _NPY_DISABLE,
    "OPENBLAS_CORETYPE": "Nehalem",
    "OPENBLAS_NUM_THREADS": "1",
    "OPENBLAS_DEFAULT_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


def pin_numerics() -> bool:
    """Set CANONICAL_ENV (overriding the caller's values) if numpy is not loaded yet.

    Returns True when the pin took effect; False when numpy was already imported in this
    process (e.g. the CLI driven in-process by a test), where it cannot be changed any more."""
    if "numpy" in sys.modules:
        return False
    os.environ.update(CANONICAL_ENV)
    return True

