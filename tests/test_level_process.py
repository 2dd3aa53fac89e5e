"""The minimax level in a child process (coefgen/level_process.py, issue 19): the same Level and
the same table bytes as in-process, errors surfaced, nothing left running."""

from __future__ import annotations

import pytest

import coefgen.level_process as lp
from coefgen.compiler import compile_table
from coefgen.errors import CheckError, InputError
from coefgen.solvers.minimax import minimax_level


def test_child_level_equals_in_process_level():
    got = lp.LevelProcess("kl", 64).result()
    want = minimax_level("kl", 64)
    assert (got.level, got.digits, got.lower, got.upper, got.reference) == \
        (want.level, want.digits, want.lower, want.upper, want.reference)


def test_child_errors_are_raised_in_the_parent():
    with pytest.raises(InputError, match="unknown divergence"):
        lp.LevelProcess("nonsense", 8).result()
    with pytest.raises(CheckError, match="K=8"):  # a failure other than coefgen's own errors
        lp.LevelProcess("kl", "8x").result()


def test_cancel_stops_the_child():
    pending = lp.LevelProcess("kl", 2048)
    pending.cancel()
    assert pending._proc.poll() is not None


@pytest.mark.skipif(lp.usable_cores() < 2, reason="one usable core: the level is computed in-process")
@pytest.mark.parametrize("params", [{"max_mse": "4plugin"}, {"tau": 10}])
def test_parallel_level_writes_the_same_table(monkeypatch, params):
    """compile_table(parallel_level=True) takes the child-process path (threshold lowered for a quick
    K) and gives the byte-identical sealed payload of the in-process path."""
    started = []
    real = lp.LevelProcess

    class Spy(real):
        def __init__(self, *a):
            started.append(a)
            super().__init__(*a)

    monkeypatch.setattr(lp, "PARALLEL_LEVEL_MIN_K", 8)
    monkeypatch.setattr(lp, "LevelProcess", Spy)
    par = compile_table("kl", 24, "aqp", params, parallel_level=True)
    assert started == [("kl", 24)]
    seq = compile_table("kl", 24, "aqp", params)
    assert par == seq
    small = compile_table("kl", 6, "aqp", params, parallel_level=True)  # below the threshold: in-process
    assert started == [("kl", 24)] and small["K"] == 6
