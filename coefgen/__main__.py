"""The ``coefgen`` command's entry point (``coefgen`` console script, ``python -m coefgen``).

The command is the compiler: it needs the ``compiler`` extra (click, scipy, cvxpy, …). A base
install (``pip install coefgen``: numpy only, for trainers) has the runtime and the default
tables but not the command; there ``coefgen`` exits 2 with one line naming the extra instead
of an ImportError traceback. Only ``importlib.util.find_spec`` runs here: nothing is imported
before the check (the command's numeric pinning must come before numpy loads).
"""

from __future__ import annotations

import importlib.util
import sys

# import name -> distribution name, for every package of the ``compiler`` extra
COMPILER_MODULES = {
    "click": "click",
    "scipy": "scipy",
    "cvxpy": "cvxpy",
    "clarabel": "clarabel",
    "mpmath": "mpmath",
    "gmpy2": "gmpy2",
    "flint": "python-flint",
    "yaml": "pyyaml",
    "matplotlib": "matplotlib",
}


def missing_compiler_packages() -> list[str]:
    """Distribution names of the compiler extra that are not importable here."""
    missing = []
    for module, dist in COMPILER_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def main(argv=None):
    missing = missing_compiler_packages()
    if missing:
        sys.stderr.write('coefgen: error: the coefgen command needs the compiler extra: pip install "coefgen[compiler]" '
                         f"(missing: {', '.join(missing)}); the runtime (coefgen.runtime, coefgen.integrations, "
                         "the default tables) works without it\n")
        sys.exit(2)
    from .cli import main as cli_main

    return cli_main(args=argv, prog_name="coefgen")


if __name__ == "__main__":  # pragma: no cover
    main()
