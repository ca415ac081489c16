"""Elementwise, reduction and shape Functions behind ``Tensor``'s operators and methods."""
from __future__ import annotations

from .autograd import Function
from .backend import get_array_module


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting (leading and size-1 axes)."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1
    )
    g = grad.sum(axis=axes, keepdims=True) if axes else grad
    return g.reshape(shape)


def _shape(x):
    return getattr(x, "shape", ())


class Add(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.sa), unbroadcast(g, self.sb)


class Sub(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.sa), unbroadcast(-g, self.sb)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        ga = unbroadcast(g * self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        gb = unbroadcast(g * self.a, _shape(self.b)) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        ga = unbroadcast(g / self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        gb = (
            unbroadcast(-g * self.a / (self.b * self.b), _shape(self.b))
            if self.needs_input_grad[1]
            else None
        )
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Pow(Function):
    """a ** b; the exponent may itself be a Tensor (gradient b * a^(b-1) and a^b * log a)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, g):
        xp = get_array_module(self.a)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = unbroadcast(g * self.b * self.a ** xp.where(self.b == 0, 1, self.b - 1), _shape(self.a))
        if self.needs_input_grad[1]:
            gb = unbroadcast(g * self.out * xp.log(xp.where((self.a == 0) & (self.b >= 0), 1, self.a)), _shape(self.b))
        return ga, gb


class MatMul(Function):
    """``a @ b`` with NumPy's matmul semantics (1-D operands, batched stacks broadcast)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        xp = get_array_module(g)
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:  # first, so a 0-d g (vector @ vector) becomes (1,) and then (1, 1)
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = xp.swapaxes(a2, -1, -2) @ g2
            gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


class Exp(Function):
    def forward(self, a):
        self.out = get_array_module(a).exp(a)
        return self.out

    def backward(self, g):
        return (g * self.out,)


class Log(Function):
    def forward(self, a):
        self.a = a
        return get_array_module(a).log(a)

    def backward(self, g):
        return (g / self.a,)


def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _expand(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts back over ``shape``."""
    if not keepdims:
        kept = [1 if i in axes else n for i, n in enumerate(shape)]
        g = g.reshape(kept)
    return g


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _norm_axis(axis, a.ndim), keepdims
        return a.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        xp = get_array_module(g)
        return (xp.broadcast_to(_expand(g, self.shape, self.axes, self.keepdims), self.shape).copy(),)


class Mean(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _norm_axis(axis, a.ndim), keepdims
        self.count = 1
        for ax in self.axes:
            self.count *= a.shape[ax]
        return a.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        xp = get_array_module(g)
        g = _expand(g, self.shape, self.axes, self.keepdims) / self.count
        return (xp.broadcast_to(g, self.shape).astype(g.dtype, copy=True),)


class Max(Function):
    """Maximum over axes; the gradient is split evenly between tied maxima (as torch.amax)."""

    def forward(self, a, axis=None, keepdims=False):
        self.a, self.axes, self.keepdims = a, _norm_axis(axis, a.ndim), keepdims
        self.out = a.max(axis=self.axes, keepdims=True)
        return self.out if keepdims else self.out.reshape(
            [n for i, n in enumerate(a.shape) if i not in self.axes]
        )

    def backward(self, g):
        mask = self.a == self.out
        g = _expand(g, self.a.shape, self.axes, self.keepdims)
        count = mask.sum(axis=self.axes, keepdims=True)
        return ((mask * (g / count)).astype(self.a.dtype),)


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return (g.reshape(self.shape),)


class Transpose(Function):
    def forward(self, a, axes=None):
        xp = get_array_module(a)
        self.axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(axes)
        return xp.transpose(a, self.axes)

    def backward(self, g):
        inverse = [0] * len(self.axes)
        for i, ax in enumerate(self.axes):
            inverse[ax] = i
        return (get_array_module(g).transpose(g, inverse),)


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        xp = get_array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        # add.at accumulates repeated indices (fancy indexing may pick an element twice).
        xp.add.at(out, self.index, g)
        return (out,)


class Cast(Function):
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return (g.astype(self.dtype),)
