"""Reverse-mode automatic differentiation: ``Function`` nodes and the backward pass.

A ``Function`` computes its output from plain arrays in ``forward`` and maps the output's
gradient to its inputs' gradients in ``backward``; both live in one class so they are read
together. ``Function.apply`` wires the node into the graph when any input requires a gradient.
``backward`` walks the graph in reverse topological order with an explicit stack, so a chain
thousands of layers deep needs no recursion.

The graph holds no activations it does not need: a Function's ``parents`` are the leaf
Tensors themselves (parameters and inputs, whose ``.grad`` backward fills) and, for every other
input, a ``Node`` -- the producing Function, shape, dtype and a weak reference to the Tensor, but
not its data. An intermediate result is therefore freed as soon as the user's code and the
Functions that saved it for their backward let go of it (as in PyTorch, where only saved tensors
outlive the forward).

``_observers`` is the one hook for tools that watch ops run (``atrous.analysis`` adds a
callback ``obs(fn, inputs, result)`` while it traces a model, so ops called functionally get
rows in ``summary``). It is empty otherwise, and then costs ``apply`` one truth test.
"""
from __future__ import annotations

import contextlib
import threading
import weakref

_state = threading.local()
_observers: list = []  # callbacks (fn, inputs, result) after every apply; see the docstring


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


@contextlib.contextmanager
def _grad_mode(mode: bool):
    prev = is_grad_enabled()
    set_grad_enabled(mode)
    try:
        yield
    finally:
        set_grad_enabled(prev)


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) under which no graph is recorded."""

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(False)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False


class enable_grad(contextlib.ContextDecorator):
    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(True)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False


class Node:
    """What the graph keeps of a non-leaf Tensor: everything backward reads, except the data."""

    __slots__ = ("_fn", "shape", "dtype", "requires_grad", "_ref", "__weakref__")

    def __init__(self, tensor):
        self._fn = tensor._fn
        self.shape, self.dtype = tensor.data.shape, tensor.data.dtype
        self.requires_grad = tensor.requires_grad
        self._ref = weakref.ref(tensor)

    @property
    def ndim(self):
        return len(self.shape)

    def tensor(self):
        """The Tensor this node stands for, or None once it has been freed."""
        return self._ref()


def graph_ref(t):
    """What the graph holds for Tensor ``t``: ``t`` itself if it is a leaf, else its one Node."""
    if t._fn is None:
        return t
    node = t._node
    if node is None:
        node = t._node = Node(t)
    return node


class Function:
    """One differentiable op. Subclasses define::

        def forward(self, *arrays, **options) -> array
        def backward(self, grad_out) -> tuple of arrays (or None), one per positional input

    ``self.needs_input_grad[i]`` tells backward which gradients are wanted, so it can skip
    work (a conv whose input is the image needs no input gradient).
    Inputs that are not Tensors (arrays, numbers) are constants: no gradient flows to them.
    """

    needs_input_grad: tuple = ()
    parents: tuple = ()

    @classmethod
    def apply(cls, *inputs, **options):
        from .tensor import Tensor

        fn = cls()
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        needs = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
        record = is_grad_enabled() and any(needs)
        fn.needs_input_grad = needs
        out = fn.forward(*arrays, **options)
        result = Tensor(out, requires_grad=record, _fn=fn if record else None)
        if record:
            fn.parents = tuple(graph_ref(x) if isinstance(x, Tensor) else None for x in inputs)
        if _observers:
            for observe in tuple(_observers):
                observe(fn, inputs, result)
        return result

    def forward(self, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError


def _topological_order(root):
    """Tensors reachable from ``root`` through recorded Functions, parents before children."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if node._fn is not None:
            for p in node._fn.parents:
                if p is not None and p.requires_grad and id(p) not in seen:
                    stack.append((p, False))
    return order


def run_backward(root, grad):
    """Accumulate d(root)/d(leaf) * grad into every leaf's ``.grad`` (and into the ``.grad`` of
    intermediate tensors that asked for it with ``retain_grad``)."""
    root = graph_ref(root)
    grads = {id(root): grad}
    for node in reversed(_topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        # Leaves accumulate across backward calls, as PyTorch; never mutate g in place.
        target = node if node._fn is None else node.tensor()
        if target is not None and (node._fn is None or target._retain_grad):
            target.grad = g if target.grad is None else target.grad + g
        if node._fn is None:
            continue
        fn = node._fn
        in_grads = fn.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for p, pg in zip(fn.parents, in_grads):
            if p is None or pg is None or not p.requires_grad:
                continue
            pg = pg if pg.dtype == p.dtype else pg.astype(p.dtype)  # a float32 leaf keeps float32 grads
            if pg.shape != p.shape:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape {pg.shape} "
                    f"for an input of shape {p.shape}"
                )
            key = id(p)
            grads[key] = pg if key not in grads else grads[key] + pg
