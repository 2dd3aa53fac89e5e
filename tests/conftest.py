import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def coefgen_cmd():
    """argv prefix running the CLI of this checkout in the test's interpreter."""
    return [sys.executable, "-m", "coefgen.cli"]
