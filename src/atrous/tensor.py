"""``Tensor``: an array plus the graph edge that produced it, with PyTorch's autograd surface."""
from __future__ import annotations

import numbers

import numpy as np

from . import ops
from .autograd import run_backward
from .backend import DEFAULT_DTYPE


def _as_array(data, dtype=None):
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.generic):  # a full reduction's NumPy scalar becomes a 0-d array
        data = np.asarray(data)
    if hasattr(data, "__array_namespace__") or isinstance(data, np.ndarray) or type(
        data
    ).__module__.startswith("cupy"):
        arr = data
    else:
        arr = np.asarray(data)
        # Python floats become float32, as torch.tensor does; ints and bools keep their kind.
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            arr = arr.astype(DEFAULT_DTYPE)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    >>> x = Tensor([[1.0, 2.0]], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([[2., 4.]], dtype=float32)
    """

    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, _fn=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._fn = _fn
        self._node = None  # what the autograd graph holds for this tensor (autograd.graph_ref)
        self._retain_grad = False
        if self.requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(
                f"Tensor: only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )

    # ----- array protocol and metadata -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self._fn is None

    @property
    def grad_fn(self):
        return self._fn

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def numpy(self):
        return self.data

    def item(self):
        return self.data.item()

    def __float__(self):
        return float(self.data)

    def __int__(self):
        return int(self.data)

    def tolist(self):
        return self.data.tolist()

    def detach(self):
        return Tensor(self.data)

    def retain_grad(self):
        self._retain_grad = True

    def requires_grad_(self, mode=True):
        self.requires_grad = bool(mode)
        return self

    def astype(self, dtype):
        return ops.Cast.apply(self, dtype=np.dtype(dtype))

    float = lambda self: self.astype(np.float32)  # noqa: E731
    double = lambda self: self.astype(np.float64)  # noqa: E731

    def __repr__(self):
        body = np.array2string(np.asarray(self.data), prefix="Tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.dtype != DEFAULT_DTYPE:
            extra = f", dtype={self.dtype}" + extra
        return f"Tensor({body}{extra})"

    # ----- autograd ----------------------------------------------------------------------
    def backward(self, gradient=None):
        """Accumulate gradients of this tensor into the ``.grad`` of every leaf it depends on.

        A scalar needs no ``gradient``; any other shape needs one of the same shape, as PyTorch.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: tensor does not require grad and has no grad_fn")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implicitly created only for scalar outputs, "
                    f"got shape {self.shape}; pass gradient= of that shape"
                )
            g = np.ones_like(self.data)
        else:
            g = _as_array(gradient)
            if g.shape != self.shape:
                raise ValueError(
                    f"backward: gradient has shape {g.shape} but the tensor has shape {self.shape}"
                )
            g = g.astype(self.dtype, copy=False)
        run_backward(self, g)

    # ----- arithmetic --------------------------------------------------------------------
    def _other(self, other):
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number):
            return np.asarray(other, dtype=self.dtype)
        return _as_array(other)

    def __add__(self, o):
        return ops.Add.apply(self, self._other(o))

    def __radd__(self, o):
        return ops.Add.apply(self._other(o), self)

    def __sub__(self, o):
        return ops.Sub.apply(self, self._other(o))

    def __rsub__(self, o):
        return ops.Sub.apply(self._other(o), self)

    def __mul__(self, o):
        return ops.Mul.apply(self, self._other(o))

    def __rmul__(self, o):
        return ops.Mul.apply(self._other(o), self)

    def __truediv__(self, o):
        return ops.Div.apply(self, self._other(o))

    def __rtruediv__(self, o):
        return ops.Div.apply(self._other(o), self)

    def __neg__(self):
        return ops.Neg.apply(self)

    def __pow__(self, o):
        return ops.Pow.apply(self, self._other(o))

    def __rpow__(self, o):
        return ops.Pow.apply(self._other(o), self)

    def __matmul__(self, o):
        return ops.MatMul.apply(self, self._other(o))

    def __rmatmul__(self, o):
        return ops.MatMul.apply(self._other(o), self)

    # Comparisons give plain boolean arrays: they are not differentiable.
    def __eq__(self, o):
        return self.data == np.asarray(o)

    def __ne__(self, o):
        return self.data != np.asarray(o)

    def __lt__(self, o):
        return self.data < np.asarray(o)

    def __le__(self, o):
        return self.data <= np.asarray(o)

    def __gt__(self, o):
        return self.data > np.asarray(o)

    def __ge__(self, o):
        return self.data >= np.asarray(o)

    __hash__ = object.__hash__

    # ----- reductions and shape ----------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return ops.Max.apply(self, axis=axis, keepdims=keepdims)

    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        s = self.shape
        end = end_dim % self.ndim if self.ndim else 0
        if self.ndim and start_dim % self.ndim > end:
            raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} for shape {s}")
        new = s[:start_dim] + (-1,) + s[end + 1 :] if self.ndim else (1,)
        return self.reshape(new)

    def transpose(self, *axes):
        """NumPy-style permutation: ``t.transpose()`` reverses, ``t.transpose(1, 0, 2)`` permutes."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return ops.Transpose.apply(self, axes=axes or None)

    def permute(self, *axes):
        return self.transpose(*axes)

    @property
    def T(self):
        return self.transpose()

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return ops.GetItem.apply(self, index=index)


def tensor(data, requires_grad=False, dtype=None):
    """Build a Tensor, copying ``data`` (as ``torch.tensor``)."""
    arr = _as_array(data, dtype)
    return Tensor(arr.copy(), requires_grad=requires_grad)


def as_tensor(x):
    """Wrap an array in a Tensor without copying; Tensors pass through."""
    return x if isinstance(x, Tensor) else Tensor(x)
