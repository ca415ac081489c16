import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Differential tests draw many small configurations; keep them deterministic and unhurried.
settings.register_profile(
    "atrous",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("atrous")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def torch():
    """PyTorch for differential tests; skipped with a reason where it is not installed."""
    t = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[dev]')")
    t.set_num_threads(int(os.environ.get("ATROUS_TEST_THREADS", "2")))
    return t
