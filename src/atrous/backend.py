"""Array namespace and global configuration.

Kernels never hard-code ``np.`` on data: they ask ``get_array_module(x)`` for the namespace of
their input, so the same code runs on NumPy arrays today and CuPy arrays later.
"""
from __future__ import annotations

import numpy as np

DEFAULT_DTYPE = np.float32


def get_array_module(*arrays):
    """Return the array namespace (``numpy`` or ``cupy``) of the first array that has one."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy  # imported only when a CuPy array is actually seen

            return cupy
    return np


class Config:
    """Global knobs, in the spirit of ``torch.backends``.

    workspace_bytes: upper bound on the im2col column buffer of one conv call; larger calls
        are split over the batch so peak memory stays bounded (Caffe's one-image-at-a-time
        idea, generalised to as many images as fit).
    conv_algorithm: 'auto' lets the library choose; 'gemm' forces im2col + GEMM; 'gemm_nhwc'
        (channels-last columns), 'mec' (memory-efficient convolution), 'winograd' (F(2x2,3x3)),
        'winograd_f4' (F(4x4,3x3)), 'direct_depthwise' or 'fft' force that algorithm wherever
        it applies (GEMM elsewhere).
        See ``atrous.kernels.algorithms``.
    conv_autotune: like ``torch.backends.cudnn.benchmark``: with conv_algorithm 'auto', time
        every applicable algorithm on the first call of each shape and cache the fastest.
    use_numba: run the compiled (numba) kernels where numba is installed; False forces the
        pure-NumPy reference paths (also ``ATROUS_DISABLE_NUMBA=1`` in the environment).
    """

    def __init__(self):
        self.workspace_bytes = 256 * 1024 * 1024
        self.conv_algorithm = "auto"
        self.conv_autotune = False
        self.use_numba = True

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"Config({fields})"


config = Config()
