"""Keep freed memory for reuse instead of handing it back to the OS (glibc's malloc).

Every convolution allocates and frees arrays of megabytes: columns, lowered inputs, outputs,
gradients. glibc serves such requests with ``mmap`` and returns them with ``munmap`` when they
are freed (above a threshold that starts at 128 KiB and adapts), and trims the top of its heap
once 128 KiB of it is free. The next call then writes to fresh pages, and the kernel zero-fills
each 4 KiB page on its first touch, one page fault at a time. On a virtual machine that cost
varies with the host's load and can exceed the arithmetic: with 2 threads, forward+backward of
a (8, 64, 56, 56) 3x3 convolution measured 28-33 ms with glibc's defaults and 23-24 ms with
freed memory kept, and the CIFAR ResNet training step 60-67 ms against 53-58 ms (separate
processes, alternated).

``keep_freed_memory()`` sets two of glibc's ``mallopt`` parameters: ``M_MMAP_THRESHOLD`` to 32 MiB
(glibc's largest; smaller requests come from the heap, whose freed blocks are reused without new
page faults) and ``M_TRIM_THRESHOLD`` to ``limit`` (free memory at the top of the heap is handed
back only beyond it). The resident size then stays near its peak between calls instead of
falling back. The peak itself is what ``benchmarks/memory.py`` measures.

``import atrous`` calls it, unless the environment variable ``ATROUS_KEEP_FREED_MEMORY`` is
``0``; ``keep_freed_memory(False)`` restores glibc's initial values (without its adaptive
threshold, which cannot be switched back on). It is a setting of the whole process, so it also
applies to other libraries' allocations. Where the C library is not glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "ENV"]

ENV = "ATROUS_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit machines
DEFAULT_LIMIT = 256 << 20
GLIBC_DEFAULT = 128 << 10  # both thresholds' initial values


def _mallopt():
    """glibc's ``mallopt``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only (musl has no mallopt)
        fn = libc.mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return fn


def keep_freed_memory(enable=True, limit=DEFAULT_LIMIT):
    """Keep up to ``limit`` bytes of freed heap memory for reuse (``enable=True``), or return to
    glibc's initial thresholds (False). Returns True when the setting was applied, False where
    the C library has no ``mallopt``.

    >>> from atrous.allocator import keep_freed_memory
    >>> keep_freed_memory() in (True, False)
    True
    """
    if isinstance(limit, bool) or not hasattr(limit, "__index__") or int(limit) < 0:
        raise ValueError(f"keep_freed_memory: limit must be a non-negative int of bytes, got {limit!r}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap, trim = (MMAP_THRESHOLD, min(int(limit), 2**31 - 1)) if enable else (GLIBC_DEFAULT, GLIBC_DEFAULT)
    return bool(mallopt(M_MMAP_THRESHOLD, mmap)) and bool(mallopt(M_TRIM_THRESHOLD, trim))


def _apply_default():
    if os.environ.get(ENV, "1").strip() != "0":
        keep_freed_memory(True)
