"""One thread count for everything that runs in parallel: BLAS (the GEMMs) and numba (the
compiled kernels), like ``torch.set_num_threads``.

atrous never runs BLAS and a compiled kernel at the same time -- ops run one after another --
so both pools get the same count ``n``, normally the number of cores: each op has all cores
and the cores are never asked for more than ``n`` threads at once (no oversubscription).
numba's idle threads sleep between kernels (see ``atrous.kernels._numba``).

How the count is applied:

* BLAS: through ``threadpoolctl`` (``pip install threadpoolctl``; in ``atrous[dev]``),
  which changes the count of the BLAS (and OpenMP) libraries already loaded, at once. Without
  threadpoolctl a loaded BLAS cannot be changed from Python: ``set_num_threads`` then sets
  ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and friends, which only
  libraries loaded later and child processes read, and warns. To fix BLAS's count without
  threadpoolctl, set those variables before starting Python (before NumPy is imported).
* numba: ``numba.set_num_threads``, clipped to ``NUMBA_NUM_THREADS`` (the size of numba's pool,
  fixed when numba loads; by default the number of cores). If numba is not loaded yet the count
  is applied when it loads. numba keeps the count per calling thread; atrous re-applies it in
  whichever thread runs a kernel.
"""
from __future__ import annotations

import os
import warnings

from .kernels import _numba

_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_requested = None


def set_num_threads(n):
    """Use ``n`` threads for BLAS and for numba's compiled kernels.

    >>> import atrous
    >>> atrous.set_num_threads(2)
    >>> atrous.get_num_threads()
    2
    """
    global _requested
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be an int, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        for var in _ENV_VARS:
            os.environ[var] = str(n)
        warnings.warn(
            "set_num_threads: threadpoolctl is not installed, so the BLAS already loaded keeps "
            f"its thread count; {', '.join(_ENV_VARS[:3])} are set to {n} for libraries loaded "
            "later and child processes (pip install threadpoolctl, or set them before starting "
            "Python)",
            RuntimeWarning,
            stacklevel=2,
        )
    else:
        threadpool_limits(limits=n)  # BLAS and OpenMP pools; stays until changed
    _numba.set_threads(n)
    _requested = n


def get_num_threads():
    """The thread count in use: the one set by ``set_num_threads``, else BLAS's (via
    threadpoolctl), else the number of CPUs."""
    if _requested is not None:
        return _requested
    info = thread_info()
    return info["blas"] or os.cpu_count() or 1


def thread_info():
    """{'blas': threads of the BLAS (None if unknown), 'numba': numba's threads in this thread
    (None while numba is not loaded), 'numba_max': numba's pool size (None if not loaded),
    'numba_layer': numba's threading layer (None until a parallel kernel ran), 'requested'}."""
    blas = None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        blas = max(counts) if counts else None
    nb = _numba.numba_module() if _numba._tried else None
    layer = None
    if nb is not None:
        try:
            layer = nb.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            layer = None
    return {
        "blas": blas,
        "numba": _numba.get_threads(),
        "numba_max": _numba.max_threads() if nb is not None else None,
        "numba_layer": layer,
        "requested": _requested,
    }


__all__ = ["set_num_threads", "get_num_threads", "thread_info"]
