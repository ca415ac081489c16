"""Activations and dropout: elementwise nonlinearities, softmax over one axis, inverted dropout.

Each op is one ``Function`` with its backward beside its forward. Backward passes reuse what the
forward already computed (the output for tanh/sigmoid/softmax, a boolean mask for the ReLUs), so
a backward costs one or two passes over memory. ``inplace=`` is accepted where PyTorch has it, for
API compatibility only: the result is always a new Tensor, because autograd keeps references to
inputs and mutating them would corrupt gradients computed later.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .._validate import check_float
from ..autograd import Function
from ..backend import get_array_module
from ..random import default_generator
from ..tensor import Tensor, _as_array

__all__ = [
    "relu",
    "relu6",
    "leaky_relu",
    "prelu",
    "elu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "softmax",
    "log_softmax",
    "dropout",
]


def _float_input(op, x, name="input"):
    """(what to pass to ``apply``, the underlying array), after checking it is floating."""
    arr = x.data if isinstance(x, Tensor) else _as_array(x)
    check_float(op, name, arr)
    return (x if isinstance(x, Tensor) else arr), arr


# ----- ReLU family ---------------------------------------------------------------------------
class _ReLU(Function):
    def forward(self, x):
        # Keep the output, not a mask: the next layer holds it anyway, so backward costs no memory.
        self.y = get_array_module(x).maximum(x, 0)
        return self.y

    def backward(self, g):
        return (g * (self.y > 0),)  # y > 0 exactly where x > 0 (torch: gradient 0 at x == 0)


def relu(input, inplace=False):
    """max(0, x) elementwise. Shape: any; output has the input's shape and dtype.

    >>> relu(np.array([-1.0, 2.0], np.float32)).numpy()
    array([0., 2.], dtype=float32)
    """
    x, _ = _float_input("relu", input)
    return _ReLU.apply(x)


class _Hardtanh(Function):
    def forward(self, x, lo, hi):
        # torch's hardtanh backward passes the gradient only strictly inside (lo, hi).
        self.mask = (x > lo) & (x < hi)
        return get_array_module(x).clip(x, lo, hi)

    def backward(self, g):
        return (g * self.mask,)


def relu6(input, inplace=False):
    """min(max(0, x), 6) elementwise (MobileNet's bounded ReLU). Shape: any.

    >>> relu6(np.array([-1.0, 3.0, 9.0], np.float32)).numpy()
    array([0., 3., 6.], dtype=float32)
    """
    x, _ = _float_input("relu6", input)
    return _Hardtanh.apply(x, lo=0.0, hi=6.0)


class _LeakyReLU(Function):
    def forward(self, x, slope):
        xp = get_array_module(x)
        self.pos, self.slope = x > 0, slope
        s = x.dtype.type(slope)
        return xp.where(self.pos, x, x * s)

    def backward(self, g):
        xp = get_array_module(g)
        # torch: x > 0 ? g : g * slope, so x == 0 gets the slope.
        return (xp.where(self.pos, g, g * g.dtype.type(self.slope)),)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x if x > 0 else negative_slope * x. Shape: any.

    >>> leaky_relu(np.array([-2.0, 2.0], np.float32), 0.1).numpy()
    array([-0.2,  2. ], dtype=float32)
    """
    x, _ = _float_input("leaky_relu", input)
    return _LeakyReLU.apply(x, slope=float(negative_slope))


class _PReLU(Function):
    def forward(self, x, w):
        xp = get_array_module(x)
        # weight broadcasts along the channel axis 1: shape (C, 1, 1, ...) for a k-D input.
        self.wshape = w.shape
        wb = w.reshape((-1,) + (1,) * (x.ndim - 2)) if x.ndim >= 2 else w
        self.x, self.wb, self.pos = x, wb, x > 0
        return xp.where(self.pos, x, wb * x)

    def backward(self, g):
        xp = get_array_module(g)
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = xp.where(self.pos, g, g * self.wb)
        if self.needs_input_grad[1]:
            neg = xp.where(self.pos, 0, g * self.x)
            if len(self.wshape) and self.wshape[0] > 1:
                axes = (0,) + tuple(range(2, neg.ndim))
                gw = neg.sum(axis=axes).reshape(self.wshape)
            else:
                gw = neg.sum().reshape(self.wshape)
        return gx, gw


def prelu(input, weight):
    """x if x > 0 else weight[c] * x, with a learnable slope per channel or one for all.

    Shape: input (N, C, *) (or 0/1-D, then C = 1); weight (1,) or (C,), broadcast over axis 1.

    >>> prelu(np.array([[-2.0, 2.0]], np.float32), np.array([0.25], np.float32)).numpy()
    array([[-0.5,  2. ]], dtype=float32)
    """
    x, xa = _float_input("prelu", input)
    w, wa = _float_input("prelu", weight, "weight")
    if wa.ndim > 1:
        raise ValueError(f"prelu: weight must be 0-D or 1-D, got shape {tuple(wa.shape)}")
    channels = xa.shape[1] if xa.ndim >= 2 else 1
    if wa.size not in (1, channels):
        raise ValueError(
            f"prelu: weight has {wa.size} elements but must have 1 or C={channels} "
            f"(input.shape[1]) elements; input shape {tuple(xa.shape)}, weight shape {tuple(wa.shape)}"
        )
    if wa.dtype != xa.dtype:
        raise TypeError(f"prelu: input has dtype {xa.dtype} but weight has dtype {wa.dtype}")
    return _PReLU.apply(x, w)


class _ELU(Function):
    def forward(self, x, alpha):
        xp = get_array_module(x)
        a = x.dtype.type(alpha)
        self.pos = x > 0
        # expm1 keeps alpha * (e^x - 1) accurate near 0; x is clipped so large x cannot overflow.
        self.negpart = a * xp.exp(xp.minimum(x, 0))  # alpha * e^x, also the gradient for x <= 0
        return xp.where(self.pos, x, a * xp.expm1(xp.minimum(x, 0)))

    def backward(self, g):
        return (get_array_module(g).where(self.pos, g, g * self.negpart),)


def elu(input, alpha=1.0, inplace=False):
    """x if x > 0 else alpha * (exp(x) - 1). Shape: any.

    >>> elu(np.array([0.0, 1.0], np.float32)).numpy()
    array([0., 1.], dtype=float32)
    """
    x, _ = _float_input("elu", input)
    return _ELU.apply(x, alpha=float(alpha))


def _erf(xp, x):
    """erf elementwise: scipy's where installed, else the standard library's, exact either way."""
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy is optional
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x).astype(x.dtype, copy=False)


class _GELU(Function):
    def forward(self, x, approximate):
        xp = get_array_module(x)
        t = x.dtype.type
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            # 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). 0.5 (1 + tanh u) is
            # sigmoid(2u), which stays accurate where tanh(u) rounds to -1.
            u = t(math.sqrt(2 / math.pi)) * (x + t(0.044715) * x * x * x)
            self.s = _sigmoid_array(xp, 2 * u)
            return x * self.s
        self.cdf = t(0.5) * (1 + _erf(xp, x * t(1 / math.sqrt(2))))
        return x * self.cdf

    def backward(self, g):
        xp = get_array_module(g)
        x, t = self.x, self.x.dtype.type
        if self.approximate == "tanh":
            du = t(math.sqrt(2 / math.pi)) * (1 + t(3 * 0.044715) * x * x)
            # d/dx x sigmoid(2u) = s + x * 2 s (1 - s) du
            d = self.s + 2 * x * self.s * (1 - self.s) * du
        else:
            pdf = t(1 / math.sqrt(2 * math.pi)) * xp.exp(t(-0.5) * x * x)
            d = self.cdf + x * pdf
        return (g * d,)


def gelu(input, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF (exact, via erf) or its tanh approximation.

    Shape: any. ``approximate`` is ``'none'`` or ``'tanh'``, as PyTorch.

    >>> gelu(np.array([0.0], np.float32)).numpy()
    array([0.], dtype=float32)
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    x, _ = _float_input("gelu", input)
    return _GELU.apply(x, approximate=approximate)


def _sigmoid_array(xp, x):
    # exp(-|x|) never overflows; pick the form of 1/(1+e^-x) that keeps tiny outputs accurate.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class _Sigmoid(Function):
    def forward(self, x):
        self.out = _sigmoid_array(get_array_module(x), x)
        return self.out

    def backward(self, g):
        return (g * self.out * (1 - self.out),)


def sigmoid(input):
    """1 / (1 + exp(-x)), computed without overflow. Shape: any.

    >>> sigmoid(np.array([0.0], np.float32)).numpy()
    array([0.5], dtype=float32)
    """
    x, _ = _float_input("sigmoid", input)
    return _Sigmoid.apply(x)


class _SiLU(Function):
    def forward(self, x):
        self.x, self.s = x, _sigmoid_array(get_array_module(x), x)
        return x * self.s

    def backward(self, g):
        s = self.s
        return (g * (s * (1 + self.x * (1 - s))),)


def silu(input, inplace=False):
    """x * sigmoid(x) (swish). Shape: any.

    >>> silu(np.array([0.0], np.float32)).numpy()
    array([0.], dtype=float32)
    """
    x, _ = _float_input("silu", input)
    return _SiLU.apply(x)


class _Tanh(Function):
    def forward(self, x):
        self.out = get_array_module(x).tanh(x)
        return self.out

    def backward(self, g):
        return (g * (1 - self.out * self.out),)


def tanh(input):
    """Hyperbolic tangent elementwise. Shape: any.

    >>> tanh(np.array([0.0], np.float32)).numpy()
    array([0.], dtype=float32)
    """
    x, _ = _float_input("tanh", input)
    return _Tanh.apply(x)


# ----- softmax -------------------------------------------------------------------------------
def _softmax_dim(op, ndim, dim):
    if dim is None:
        # PyTorch's legacy implicit choice, with its deprecation warning.
        warnings.warn(
            f"{op}: implicit dimension choice is deprecated; pass dim= explicitly", stacklevel=3
        )
        dim = 0 if ndim in (0, 1, 3) else 1
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise ValueError(f"{op}: dim {dim} is out of range for a {ndim}-D input (expected {lo}..{hi})")
    return int(dim) % max(ndim, 1)


def _prepare_softmax(op, input, dim, dtype):
    x, xa = _float_input(op, input)
    if dtype is not None:
        from ..ops import Cast

        x = Cast.apply(x, dtype=np.dtype(dtype))
        xa = x.data
    return x, _softmax_dim(op, xa.ndim, dim) if xa.ndim else None


class _LogSoftmax(Function):
    def forward(self, x, axis):
        xp = get_array_module(x)
        self.axis = axis
        # Subtracting the max makes every exponent <= 0: logits of 1e4 neither overflow nor
        # lose the differences between them.
        shifted = x - x.max(axis=axis, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.out = shifted - lse
        return self.out

    def backward(self, g):
        xp = get_array_module(g)
        # d/dx (x - logsumexp x) applied to g: g - softmax * sum(g).
        return (g - xp.exp(self.out) * g.sum(axis=self.axis, keepdims=True),)


class _Softmax(Function):
    def forward(self, x, axis):
        xp = get_array_module(x)
        self.axis = axis
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        self.out = e
        return e

    def backward(self, g):
        y = self.out
        # Jacobian diag(y) - y y^T applied to g: y * (g - <g, y>).
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, computed after subtracting the max (stable).

    Shape: any; the output has the input's shape and sums to 1 along ``dim``.
    ``dtype`` casts the input first, as PyTorch.

    >>> softmax(np.array([[0.0, 0.0]], np.float32), dim=1).numpy()
    array([[0.5, 0.5]], dtype=float32)
    """
    x, axis = _prepare_softmax("softmax", input, dim, dtype)
    return _Softmax.apply(x, axis=axis)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """x - logsumexp(x) along ``dim``; stable for logits of any magnitude (1e4 included).

    Shape: any; the output has the input's shape.

    >>> log_softmax(np.array([[1e4, 0.0]], np.float32), dim=1).numpy()
    array([[     0., -10000.]], dtype=float32)
    """
    x, axis = _prepare_softmax("log_softmax", input, dim, dtype)
    return _LogSoftmax.apply(x, axis=axis)


# ----- dropout -------------------------------------------------------------------------------
class _Dropout(Function):
    def forward(self, x, mask):
        self.mask = mask
        return x * mask

    def backward(self, g):
        return (g * self.mask,)


def dropout(input, p=0.5, training=True, inplace=False):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1-p).

    The mask is drawn from ``atrous.random.default_generator()``, so ``atrous.manual_seed(s)``
    makes it reproducible. Identity (the input itself) when ``training`` is False or p == 0;
    all zeros when p == 1. Shape: any; dtype preserved (a float32 input keeps a float32 mask).

    >>> dropout(np.ones(4, np.float32), p=0.5, training=False).numpy()
    array([1., 1., 1., 1.], dtype=float32)
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise TypeError(f"dropout: p must be a number in [0, 1], got {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x, xa = _float_input("dropout", input)
    if not training or p == 0 or xa.size == 0:
        return x if isinstance(x, Tensor) else Tensor(xa)
    xp = get_array_module(xa)
    if p == 1:
        mask = xp.zeros(xa.shape, dtype=xa.dtype)
    else:
        rdtype = xa.dtype if xa.dtype in (np.float32, np.float64) else np.float32
        u = default_generator().random(xa.shape, dtype=rdtype)
        if xp is not np:  # pragma: no cover - CuPy
            u = xp.asarray(u)
        # Keep with probability 1 - p; the kept ones carry the 1/(1-p) scale in the mask itself.
        mask = (u >= p).astype(xa.dtype) * xa.dtype.type(1.0 / (1.0 - p))
    return _Dropout.apply(x, mask=mask)
