"""atrous.allocator: malloc is tuned on import (Linux, glibc) unless ATROUS_MALLOC_TUNING=0."""
import os
import subprocess
import sys

import pytest

from atrous import allocator

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _tuned_in_child(env_value):
    env = dict(os.environ, PYTHONPATH=SRC)
    if env_value is None:
        env.pop(allocator.ENV, None)
    else:
        env[allocator.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", "import atrous, atrous.allocator as a; print(a.tuned)"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt tuning is for glibc on Linux")
def test_import_tunes_malloc_unless_disabled():
    import ctypes

    try:
        ctypes.CDLL(None).mallopt
    except AttributeError:
        pytest.skip("this libc has no mallopt (not glibc)")
    assert _tuned_in_child(None) == "True"
    assert _tuned_in_child("0") == "False"
    assert allocator.tune() is allocator.tuned  # idempotent in this process
