"""The minimax level E*_K in a second process, while this one solves the table (issue 19).

Every non-exact table states E*_K with a proven bracket; at K ≥ 512 its high-precision Remez
takes seconds (K = 2048: about 20 s) and does not depend on the table. ``coefgen solve`` on a
machine with two cores or more starts it here, in a child process, and collects it when the
table is solved: the same Level as :func:`coefgen.solvers.minimax.minimax_level` computes
in-process (same code, same inputs), so the written bytes do not depend on where it ran.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from .errors import CheckError, InputError

PARALLEL_LEVEL_MIN_K = 512  # below this the level takes < 1 s: a process start (~0.4 s) does not pay


def usable_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _child_main(argv) -> int:  # pragma: no cover - runs in the child process
    """``python -m coefgen.level_process NAME K``: the pickled ("ok", Level) or (error type, message) on stdout."""
    name, K = argv[0], int(argv[1])
    try:
        from .solvers.minimax import minimax_level

        msg = ("ok", minimax_level(name, K))
    except (CheckError, InputError) as e:
        msg = (type(e).__name__, str(e))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        msg = ("CheckError", f"minimax level of {name} at K={K} failed in its process: {type(e).__name__}: {e}")
    sys.stdout.buffer.write(pickle.dumps(msg, protocol=4))
    sys.stdout.buffer.flush()
    return 0


class LevelProcess:
    """minimax_level(name, K) running in a child process (``python -m coefgen.level_process``);
    ``result()`` waits for it. A plain subprocess, not multiprocessing: nothing of the caller's
    ``__main__`` is re-imported, whatever the caller is."""

    def __init__(self, name: str, K: int):
        self.name, self.K = name, K
        # the caller's environment unchanged: the numeric pins of coefgen.canonical (set by the CLI
        # before numpy loaded) then hold in the child too, so it computes what this process would
        self._proc = subprocess.Popen([sys.executable, "-m", "coefgen.level_process", name, str(K)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self):
        """The Level, or the CheckError/InputError the computation raised."""
        out, err = self._proc.communicate()
        try:
            msg = pickle.loads(out) if out else None
        except Exception:  # noqa: BLE001 - a truncated or foreign stream
            msg = None
        if not (isinstance(msg, tuple) and len(msg) == 2):
            tail = (err.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1][:200]
            msg = ("CheckError", f"minimax level of {self.name} at K={self.K}: its process ended without a result "
                                 f"(exit code {self._proc.returncode}: {tail})")
        if msg[0] == "ok":
            return msg[1]
        raise (InputError if msg[0] == "InputError" else CheckError)(msg[1])

    def cancel(self) -> None:
        """Stop the computation (the table failed: its level is not needed)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


def start_level(reward, K: int, parallel: bool):
    """A LevelProcess when ``parallel`` is asked, K ≥ PARALLEL_LEVEL_MIN_K and two cores are usable; else None."""
    if not parallel or K < PARALLEL_LEVEL_MIN_K or usable_cores() < 2:
        return None
    if reward.is_polynomial and reward.degree is not None and reward.degree <= K - 1:
        return None  # E*_K = 0, nothing to compute
    return LevelProcess(reward.name, K)


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(_child_main(sys.argv[1:]))
