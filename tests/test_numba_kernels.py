"""The numba paths of pooling and col2im against their NumPy references (bitwise: the same
additions in the same order), and the optional-numba machinery: lazy import, switches."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atrous.kernels import _numba
from atrous.kernels import im2col as I
from atrous.kernels import pooling as K
from atrous.kernels._numba import jit, numba_module, prange, use_numba_disabled

needs_numba = pytest.mark.skipif(numba_module() is None, reason="numba is not installed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def both(fn, *args, **kw):
    """(NumPy result, numba result) of one kernel call."""
    with use_numba_disabled(True):
        a = fn(*args, **kw)
    with use_numba_disabled(False):
        b = fn(*args, **kw)
    return a, b


def assert_same(a, b):
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    for u, v in zip(a, b):
        if u is None:
            assert v is None
            continue
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(u, v)  # NaN == NaN here


# ----- pooling --------------------------------------------------------------------------------
@st.composite
def pool_configs(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    H = d[0] * (k[0] - 1) + 1 + draw(st.integers(0, 6))
    W = d[1] * (k[1] - 1) + 1 + draw(st.integers(0, 6))
    extra = draw(st.integers(0, 1))  # one more output row: windows reaching past the input (ceil mode)
    special = draw(st.sampled_from(["ties", "nan", "-inf", "normal"]))
    return (draw(st.integers(2, 3)), draw(st.integers(1, 3)), H, W), k, s, p, d, extra, special, draw(
        st.sampled_from([np.float32, np.float64])), draw(st.integers(0, 2**31))


def pool_input(shape, special, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(dtype)  # small integers: many ties
    if special == "normal":
        x = rng.standard_normal(shape).astype(dtype)
    elif special == "nan":
        x[rng.random(shape) < 0.2] = np.nan
    elif special == "-inf":
        x[rng.random(shape) < 0.5] = -np.inf
    return x


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@needs_numba
@settings(max_examples=60)
@given(cfg=pool_configs())
def test_max_pool_numba_equals_numpy(cfg):
    shape, k, s, p, d, extra, special, dtype, seed = cfg
    x = pool_input(shape, special, dtype, seed)
    out_hw = (out_size(shape[2], k[0], s[0], p[0], d[0]) + extra, out_size(shape[3], k[1], s[1], p[1], d[1]))
    (out, arg), (out2, arg2) = both(K.max_pool2d_forward, x, out_hw, k, s, p, d)
    assert_same((out, arg), (out2, arg2))
    assert_same(*both(K.max_pool2d_forward, x, out_hw, k, s, p, d, need_arg=False))
    g = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(dtype)
    assert_same(*both(K.max_pool2d_backward, g, arg, x.shape, k, s, p, d))


@needs_numba
@settings(max_examples=60)
@given(cfg=pool_configs(), count_include_pad=st.booleans(), scalar=st.booleans())
def test_avg_pool_numba_equals_numpy(cfg, count_include_pad, scalar):
    shape, k, s, p, _, _, _, dtype, seed = cfg
    x = pool_input(shape, "normal", dtype, seed)
    out_hw = (out_size(shape[2], k[0], s[0], p[0], 1), out_size(shape[3], k[1], s[1], p[1], 1))
    if scalar:
        divisor = dtype(3)
    else:
        dh, dw = (K.avg_pool_divisor(np, n, o, ki, si, pi, count_include_pad)
                  for n, o, ki, si, pi in zip(shape[2:], out_hw, k, s, p))
        divisor = (dh[:, None] * dw[None, :]).astype(dtype)
    assert_same(*both(K.avg_pool2d_forward, x, out_hw, k, s, p, divisor))
    g = np.random.default_rng(seed + 1).standard_normal((shape[0], shape[1]) + out_hw).astype(dtype)
    assert_same(*both(K.avg_pool2d_backward, g, x.shape, k, s, p, divisor))


@needs_numba
def test_max_pool_numba_matches_torch(torch):
    """An independent oracle too: values, indices and gradient of a 3x3/2 pool with padding."""
    x = np.random.default_rng(0).integers(-3, 3, (2, 3, 9, 8)).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, 3, 2, 1, return_indices=True)
    ty.backward(torch.ones_like(ty))
    out, arg = K.max_pool2d_forward(x, ty.shape[2:], (3, 3), (2, 2), (1, 1), (1, 1))
    np.testing.assert_array_equal(out, ty.detach().numpy())
    np.testing.assert_array_equal(K.max_pool2d_indices(arg, (9, 8), (3, 3), (2, 2), (1, 1), (1, 1)), tidx.numpy())
    gx = K.max_pool2d_backward(np.ones(out.shape, np.float32), arg, x.shape, (3, 3), (2, 2), (1, 1), (1, 1))
    np.testing.assert_array_equal(gx, tx.grad.numpy())


# ----- col2im -----------------------------------------------------------------------------------
@needs_numba
@settings(max_examples=60)
@given(
    block=st.integers(1, 2), nb=st.integers(1, 2), C=st.integers(1, 3),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pad=st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)), f64=st.booleans(), seed=st.integers(0, 2**31),
)
def test_col2im_numba_equals_numpy(block, nb, C, k, s, d, pad, extra, f64, seed):
    padding = ((pad[0], pad[1]), (pad[2], pad[3]))
    H = max(1, d[0] * (k[0] - 1) + 1 - pad[0] - pad[1]) + extra[0]
    W = max(1, d[1] * (k[1] - 1) + 1 - pad[2] - pad[3]) + extra[1]
    N = block * nb
    OH, OW = I.output_size((H, W), k, s, padding, d)
    dtype = np.float64 if f64 else np.float32
    cols = np.random.default_rng(seed).standard_normal((nb, C * k[0] * k[1], block * OH * OW)).astype(dtype)
    assert_same(*both(I.col2im, cols, (N, C, H, W), k, s, padding, d, block=block))


@needs_numba
def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> == <x, col2im(c)> on the compiled path (an oracle independent of NumPy's loop)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 6))
    geom = ((3, 2), (2, 1), ((1, 0), (2, -1)), (1, 2))
    cols = I.im2col(x, *geom)
    c = rng.standard_normal(cols.shape)
    back = I.col2im(c, x.shape, *geom)
    assert np.isclose((cols * c).sum(), (x * back).sum(), rtol=1e-12)


# ----- the machinery ------------------------------------------------------------------------------
@jit
def _double(x, out):
    for i in prange(x.shape[0]):
        out[i] = 2 * x[i]


@jit(parallel=False)
def _add_one(x):
    return x + 1


@jit
def _calls_other(x, out):
    for i in prange(x.shape[0]):
        out[i] = _add_one(x[i])


def test_jit_kernel_runs_as_plain_python_and_compiled():
    x = np.arange(5.0)
    out = np.zeros(5)
    _double.py_func(x, out)  # prange is range outside numba
    np.testing.assert_array_equal(out, 2 * x)
    with use_numba_disabled():
        assert _double.compiled is None
        with pytest.raises(RuntimeError, match="numba is not available or disabled"):
            _double(x, out)
    if numba_module() is not None:
        out2 = np.zeros(5)
        _calls_other.compiled(x, out2)  # a kernel calling another kernel
        np.testing.assert_array_equal(out2, x + 1)


def _python(code, **env):
    full = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), **env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_import_atrous_does_not_import_numba():
    code = (
        "import sys, atrous, atrous.functional, atrous.nn, atrous.threads\n"
        "import atrous.kernels.depthwise, atrous.kernels.pooling, atrous.kernels.im2col\n"
        "print('numba' in sys.modules)"
    )
    assert _python(code) == "False"


@needs_numba
def test_environment_switch_disables_numba():
    code = (
        "import sys, numpy as np\n"
        "from atrous.kernels import _numba, depthwise\n"
        "x = np.ones((1, 2, 5, 5), np.float32); w = np.ones((2, 1, 3, 3), np.float32)\n"
        "y = depthwise.depthwise_forward(x, w, padding=((1, 1), (1, 1)))\n"
        "print(_numba.enabled(), 'numba' in sys.modules, y[0, 0, 2, 2], y[0, 0, 0, 0])"
    )
    assert _python(code, ATROUS_DISABLE_NUMBA="1") == "False False 9.0 4.0"
    assert _python(code, ATROUS_DISABLE_NUMBA="0").startswith("True True 9.0 4.0")


def test_usable_accepts_only_numpy_floats():
    assert _numba.usable(np.zeros(2, np.float32), np.zeros(2))
    assert not _numba.usable(np.zeros(2, np.int64))
    assert not _numba.usable(np.zeros(2, np.float16))
    assert not _numba.usable([1.0, 2.0])
