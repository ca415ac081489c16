"""atrous.threads: one thread count for BLAS and numba."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from atrous import threads
from atrous.kernels import _numba
from atrous.kernels import depthwise as D

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, **env):
    full = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), **env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), r.stderr


@pytest.fixture
def restore_threads():
    before = threads.get_num_threads()
    yield
    threads.set_num_threads(before)


def test_sets_blas_and_numba_together(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1
    blas = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert blas and set(blas) == {1}
    info = threads.thread_info()
    assert info["blas"] == 1 and info["requested"] == 1
    if _numba.numba_module() is not None:
        x, w = np.ones((1, 2, 4, 4)), np.ones((2, 1, 3, 3))
        D.depthwise_forward(x, w)  # loads numba
        assert _numba.numba_module().get_num_threads() == 1
        assert threads.thread_info()["numba"] == 1


def test_count_is_applied_when_numba_loads_later_and_in_other_threads():
    """set before numba is imported; numba's count is per thread, so check a worker thread too."""
    pytest.importorskip("numba")
    code = (
        "import sys, threading, numpy as np, atrous.threads as T\n"
        "from atrous.kernels import depthwise as D, _numba\n"
        "T.set_num_threads(1)\n"
        "assert 'numba' not in sys.modules\n"
        "D.depthwise_forward(np.ones((1, 2, 4, 4)), np.ones((2, 1, 3, 3)))\n"
        "import numba\n"
        "seen = []\n"
        "def work():\n"
        "    D.depthwise_forward(np.ones((1, 2, 4, 4)), np.ones((2, 1, 3, 3)))\n"
        "    seen.append(numba.get_num_threads())\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "print(numba.get_num_threads(), seen[0], T.thread_info()['numba_layer'])"
    )
    out, _ = _python(code)
    n_main, n_worker, layer = out.split()
    assert (n_main, n_worker) == ("1", "1")
    assert layer == os.environ.get("NUMBA_THREADING_LAYER", "workqueue")


def test_without_threadpoolctl_sets_environment_and_warns():
    code = (
        "import sys, os, warnings\n"
        "sys.modules['threadpoolctl'] = None  # as if it were not installed\n"
        "import atrous.threads as T\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    T.set_num_threads(3)\n"
        "print(os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'], T.get_num_threads(),\n"
        "      any('threadpoolctl is not installed' in str(x.message) for x in w))"
    )
    out, _ = _python(code)
    assert out == "3 3 3 True"


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)])
def test_rejects_bad_counts(bad, err):
    with pytest.raises(err, match="set_num_threads: n must be"):
        threads.set_num_threads(bad)


def test_concurrent_callers_get_correct_results():
    """Two Python threads running compiled kernels: results still right (numba's workqueue
    layer serialises parallel regions entered from several threads)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
    w = np.random.default_rng(1).standard_normal((3, 1, 3, 3))
    expected = D.depthwise_forward(x, w, padding=((1, 1), (1, 1)))
    results = []

    def work():
        for _ in range(20):
            results.append(np.array_equal(D.depthwise_forward(x, w, padding=((1, 1), (1, 1))), expected))

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(results) == 40 and all(results)
