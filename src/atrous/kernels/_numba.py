"""numba as an optional accelerator: lazy import, a lazy ``jit`` decorator, and its thread count.

numba (``pip install 'atrous[fast]'``) compiles the memory-bound loops that NumPy runs as many
separate passes -- depthwise convolution, pooling, col2im -- into one pass over both cores. It
is never imported by ``import atrous``: a kernel module only decorates plain Python functions
with ``jit``, and numba is imported (and the function compiled, or loaded from numba's on-disk
cache) the first time a kernel is asked for::

    @jit
    def _double(x, out):
        for i in prange(x.shape[0]):  # prange from this module: range without numba
            out[i] = 2 * x[i]

    k = _double.compiled           # numba's dispatcher, or None
    if k is not None and usable(x):
        k(x, out)                  # compiled path
    else:
        out[...] = 2 * x           # the NumPy path, which is always the reference

``compiled`` is None -- and the caller runs its NumPy path -- when numba is not installed, when
the environment variable ``ATROUS_DISABLE_NUMBA`` is set to anything but ``''``/``'0'`` (read
once, at the first use), or while ``atrous.config.use_numba`` is False (checked every call, so
tests and benchmarks can switch paths at run time; ``use_numba_disabled()`` does it in a
``with`` block).

Every kernel is compiled with ``cache=True`` (numba stores the machine code next to the source,
or under ``NUMBA_CACHE_DIR``, so only the very first run pays for compilation) and, unless told
otherwise, ``parallel=True``: ``prange`` loops are split over numba's threads, whose number
``atrous.set_num_threads`` keeps equal to BLAS's (see ``atrous.threads``).

Threads: numba is asked for its ``workqueue`` threading layer unless ``NUMBA_THREADING_LAYER``
is set. Its idle threads sleep, where OpenMP threads spin for a while after each parallel loop
and then compete with the BLAS threads of the next GEMM on a machine with few cores.
workqueue aborts the process if two Python threads enter parallel kernels at once, so with it
``compiled`` hands out a wrapper that runs one parallel kernel at a time (a lock); with
``NUMBA_THREADING_LAYER=tbb``, ``omp`` or ``threadsafe`` kernels run concurrently, unlocked.
"""
from __future__ import annotations

import contextlib
import os
import threading
import types

from ..backend import config

DISABLE_ENV = "ATROUS_DISABLE_NUMBA"

prange = range  # what kernels see when they run as plain Python (tests of the kernels themselves)

_lock = threading.RLock()
_run_lock = threading.Lock()  # one parallel kernel at a time under the workqueue layer
_CONCURRENT_LAYERS = ("tbb", "omp", "threadsafe")
_numba = None  # the module once imported
_tried = False  # import attempted (successfully or not)
_threads = None  # the count asked for by set_threads, applied whenever numba is (or gets) loaded


def _env_disabled():
    return os.environ.get(DISABLE_ENV, "").strip() not in ("", "0")


def numba_module():
    """numba, imported on the first call; None when it is missing or disabled by the environment."""
    global _numba, _tried
    if _tried:
        return _numba
    with _lock:
        if not _tried:
            if not _env_disabled():
                os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
                try:
                    import numba
                except ImportError:
                    numba = None
                _numba = numba
            _tried = True
    return _numba


def enabled():
    """True when compiled kernels run: numba importable, not disabled by env or config."""
    return getattr(config, "use_numba", True) and numba_module() is not None


@contextlib.contextmanager
def use_numba_disabled(disabled=True):
    """Run the block on the NumPy paths (``disabled=True``) or allow numba (False)."""
    old = getattr(config, "use_numba", True)
    config.use_numba = not disabled
    try:
        yield
    finally:
        config.use_numba = old


def max_threads():
    """Most threads numba can use (``NUMBA_NUM_THREADS``, fixed when numba loads), or None."""
    nb = numba_module()
    return None if nb is None else nb.config.NUMBA_NUM_THREADS


def set_threads(n):
    """Ask numba for ``n`` threads (clipped to ``max_threads()``); applied now if numba is loaded,
    else when it loads. numba's count is per calling thread, so kernels re-apply it (``_sync``)."""
    global _threads
    _threads = int(n)
    if _numba is not None:
        _sync(_numba)


def get_threads():
    """numba's thread count for the calling thread, or None when numba is not loaded."""
    if _numba is None:
        return None
    _sync(_numba)
    return _numba.get_num_threads()


def _sync(nb):
    if _threads is not None:
        want = max(1, min(_threads, nb.config.NUMBA_NUM_THREADS))
        if nb.get_num_threads() != want:
            nb.set_num_threads(want)


class Kernel:
    """A Python function to be compiled by numba on first use (see the module docstring).

    ``compiled``: numba's dispatcher (compiled on the first call for each argument types), or
    None when numba is unavailable or disabled. ``py_func``: the plain Python function, which
    runs the same loops slowly (``prange`` is ``range`` there) -- useful in tests.
    """

    def __init__(self, fn, options):
        self.py_func = fn
        self.options = options
        self._dispatcher = None  # numba's dispatcher (what other compiled kernels call)
        self._call = None  # what ``compiled`` returns: the dispatcher, or it behind a lock
        self.__name__, self.__doc__ = fn.__name__, fn.__doc__

    @property
    def compiled(self):
        if not enabled():
            return None
        _sync(_numba)
        if self._call is None:
            self._build_once()
        return self._call

    def _build_once(self):
        with _lock:
            if self._dispatcher is None:
                self._dispatcher = self._build(numba_module())
                parallel = self.options.get("parallel", True)
                layer = os.environ.get("NUMBA_THREADING_LAYER", "default")
                self._call = _serialised(self._dispatcher) if parallel and layer not in _CONCURRENT_LAYERS else self._dispatcher
        return self._dispatcher

    def _build(self, nb):
        fn = self.py_func
        # Compile a copy whose globals see numba's prange and the compiled form of any other
        # Kernel it calls; the module's own globals (and py_func) stay plain Python.
        env = dict(fn.__globals__)
        env["prange"] = nb.prange
        for name in fn.__code__.co_names:  # only the globals this function's code refers to
            value = env.get(name)
            if isinstance(value, Kernel) and value is not self:
                env[name] = value._build_once()
        clone = types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)
        clone.__qualname__, clone.__module__, clone.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
        opts = dict(cache=True, parallel=True, nogil=True)
        opts.update(self.options)
        if not opts["parallel"]:
            del opts["parallel"]
        return nb.njit(**opts)(clone)

    def __call__(self, *args):
        k = self.compiled
        if k is None:
            raise RuntimeError(f"{self.__name__}: numba is not available or disabled (check .compiled first)")
        return k(*args)

    def __repr__(self):
        return f"<atrous numba kernel {self.__name__}>"


def _serialised(dispatcher):
    def call(*args):
        with _run_lock:
            return dispatcher(*args)

    call.dispatcher = dispatcher
    return call


def jit(fn=None, **options):
    """Mark ``fn`` for lazy numba compilation: ``@jit`` or ``@jit(parallel=False, ...)``.

    Options go to ``numba.njit``; defaults ``cache=True, parallel=True, nogil=True``. Returns a
    ``Kernel`` whose ``compiled`` is None where numba is missing or disabled.
    """
    if fn is None:
        return lambda f: Kernel(f, options)
    return Kernel(fn, options)


def usable(*arrays):
    """True when every array is a NumPy float32/float64 array (numba kernels take nothing else)."""
    import numpy as np

    for a in arrays:
        if type(a) is not np.ndarray or a.dtype not in (np.float32, np.float64):
            return False
    return True


__all__ = ["jit", "Kernel", "prange", "enabled", "numba_module", "use_numba_disabled",
           "set_threads", "get_threads", "max_threads", "usable", "DISABLE_ENV"]
