"""The docs' trainer examples: every block of README.md and docs/*.md marked
``<!-- docs-check: trainers -->`` runs here, in the trainers' venv (TRL, verl, OpenRLHF), by the
rules of tests/docs_check.py (python blocks run as scripts; console output compared)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from docs_check import all_blocks, run_block, workdir_for  # noqa: E402

BLOCKS = [b for b in all_blocks() if "trainers" in b.markers]


@pytest.fixture(scope="module")
def workbase(tmp_path_factory):
    return str(tmp_path_factory.mktemp("docs-trainers"))


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_trainer_block(block, workbase):
    if "skip" in block.markers:
        pytest.skip(f"docs-check: skip: {block.skip_reason}")
    run_block(block, workdir_for(block.page, workbase))


def test_some_trainer_blocks_exist():
    assert BLOCKS, "no block of README.md or docs/*.md is marked <!-- docs-check: trainers -->"
