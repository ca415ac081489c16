"""atrous.allocator: freed memory is reused instead of being faulted in again (counted in minor
page faults of a fresh process), the environment switch, and argument checking."""
import os
import subprocess
import sys

import pytest

from atrous import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc = pytest.mark.skipif(allocator._mallopt() is None, reason="the C library is not glibc (no mallopt)")

FAULTS = r"""
import resource, numpy as np, atrous
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_():  # four 16 MiB arrays alive at once, then all freed: a layer's temporaries
    arrays = [np.ones(4 << 20, np.float32) for _ in range(4)]
    del arrays
round_()
before = faults()
for _ in range(5):
    round_()  # 4 * 4096 new pages each round if the freed memory was handed back
print(faults() - before)
"""


def _faults(env_value):
    env = dict(os.environ, **{allocator.ENV: env_value}, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


@glibc
def test_freed_memory_is_reused_by_default_and_handed_back_when_switched_off():
    kept, handed_back = _faults("1"), _faults("0")
    assert kept < 1000, kept  # the blocks come back from the heap: (almost) no new pages
    # glibc's defaults trim the heap after each round (measured about 2000 faults a round)
    assert handed_back > 5000, handed_back


@glibc
def test_keep_freed_memory_applies_and_restores():
    try:
        assert allocator.keep_freed_memory(False) is True
        assert allocator.keep_freed_memory(True, limit=64 << 20) is True
    finally:
        allocator.keep_freed_memory(True)


def test_limit_is_checked():
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="keep_freed_memory: limit"):
            allocator.keep_freed_memory(limit=bad)
