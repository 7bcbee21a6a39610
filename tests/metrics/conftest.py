"""Fixtures for the metrics tests.

The package may not be installed where the tests run (a plain checkout), so src/ is put on the
path when ``monoculture`` cannot be imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
try:
    import monoculture  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the tests are run
    sys.path.insert(0, str(REPO / "src"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
