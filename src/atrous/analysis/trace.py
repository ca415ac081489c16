"""Run a model once on a zero input and record every layer call, and every op called outside one.

A leaf module is one without children (Conv2d, BatchNorm2d, ReLU, Linear, ...). A forward
hook on each records the call (dotted name, module, inputs, output) in call order; a module
called twice (a ResNet block's shared ReLU) gives two records. The pass runs in eval mode
(BatchNorm uses its running statistics and updates nothing; Dropout is the identity) with
the autograd graph recorded, since the receptive-field tracker walks it; every module's
training flag is restored afterwards.

Ops applied as functions (``F.conv2d`` in a model's ``forward``, or every layer of a model
imported from ONNX, which has no layer modules) are seen through ``atrous.autograd._observers``
while the pass runs: each op of a kind in :data:`OP_KINDS` (or run by an ONNX node listed in
:data:`ONNX_NODE_KINDS`) gives an :class:`OpCall`, unless it runs inside one of atrous's own
leaf layers (``nn.Conv2d`` calls ``conv2d``; its own record covers it). A leaf module of
another class (a user's module holding its parameters directly) whose forward applied such
ops is represented by those ops' records instead of its own.
"""
from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import autograd
from ..autograd import enable_grad
from ..tensor import Tensor

__all__ = ["Call", "OpCall", "OP_KINDS", "op_kind", "parse_shape", "trace", "first_tensor"]


@dataclass
class Call:
    name: str
    module: object
    args: tuple
    output: object


@dataclass
class OpCall:
    """An op Function applied outside atrous's own layers: its ``kind`` (see OP_KINDS), the
    Function instance (its recorded settings), its inputs as given to ``apply``, its output,
    the model parameters among its inputs as ``(dotted name, Parameter)`` and, in a model
    imported from ONNX, the op type of the graph node that ran it (else None)."""

    name: str
    kind: str
    fn: object
    inputs: tuple
    output: object
    params: list
    node_op: Optional[str] = None


# Function class (module, name) -> the row type of its calls. Losses, dropout, shape ops and
# arithmetic get no rows; MatMul only when one operand is a model parameter (a linear map).
OP_KINDS = {
    ("conv", "Conv2d"): "conv2d", ("conv", "ConvTranspose2d"): "conv_transpose2d",
    ("conv", "Linear"): "linear", ("fused", "ConvReLU"): "conv2d_relu",
    ("pooling", "_MaxPool2d"): "max_pool2d", ("pooling", "_AvgPool2d"): "avg_pool2d",
    ("pooling", "_AdaptiveAvgPool2d"): "adaptive_avg_pool2d",
    ("pooling", "_AdaptiveMaxPool2d"): "adaptive_max_pool2d",
    ("normalization", "_BatchNorm"): "batch_norm",
    ("normalization", "_LocalResponseNorm"): "local_response_norm",
    ("activation", "_ReLU"): "relu", ("activation", "_Hardtanh"): "hardtanh",
    ("activation", "_LeakyReLU"): "leaky_relu", ("activation", "_PReLU"): "prelu",
    ("activation", "_ELU"): "elu", ("activation", "_GELU"): "gelu", ("activation", "_Sigmoid"): "sigmoid",
    ("activation", "_SiLU"): "silu", ("activation", "_Tanh"): "tanh", ("activation", "_Softmax"): "softmax",
    ("activation", "_LogSoftmax"): "log_softmax", ("ops", "MatMul"): "matmul",
}
# ONNX nodes that run as other ops: (node type, op kind) -> the row type. Global pooling is
# one mean or max over H and W (kind None: no row otherwise); an AveragePool with uneven
# padding runs its window sums as a conv2d with a ones kernel, which is pooling (0 MACs).
ONNX_NODE_KINDS = {("GlobalAveragePool", None): "global_avg_pool2d",
                   ("GlobalMaxPool", None): "global_max_pool2d", ("AveragePool", "conv2d"): "avg_pool2d"}
_PACKAGE = __name__.rsplit(".", 2)[0]  # "atrous"
_KIND_BY_MODULE = {(f"{_PACKAGE}.functional.{m}" if m != "ops" else f"{_PACKAGE}.ops", n): k
                   for (m, n), k in OP_KINDS.items()}


def op_kind(fn):
    """The row type of a Function instance (``"conv2d"``, ...), or None for ops without rows."""
    for cls in type(fn).__mro__:
        kind = _KIND_BY_MODULE.get((cls.__module__, cls.__name__))
        if kind is not None:
            return kind
    return None


def _is_atrous_layer(module):
    """A layer class of ``atrous.nn``: its own record stands for the ops its forward applies."""
    return type(module).__module__.startswith(f"{_PACKAGE}.nn.")


def _onnx_node():
    """The ONNX node running in this thread, if an imported graph is running (else None)."""
    importer = sys.modules.get(f"{_PACKAGE}.onnx.importer")
    return importer.current_node() if importer is not None else None


def _op_name(kind, params, scope):
    """A row name for an op: its weight's module path (``conv1.weight`` -> ``conv1``), the
    first parameter's dotted name, else the op kind inside the module that ran it."""
    if params:
        name = params[0][0]
        return name[: -len(".weight")] if name.endswith(".weight") else name
    return f"{scope}.{kind}" if scope else kind


def parse_shape(shape, op="summary"):
    """``(3, 224, 224)``, ``[3, 224, 224]`` or ``"3x224x224"`` -> a tuple of positive ints."""
    if isinstance(shape, str):
        parts = [p for p in re.split(r"[x,\s]+", shape.strip().lower()) if p]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"{op}: input_shape {shape!r} is not like '3x224x224'") from None
    elif isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    else:
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"{op}: input_shape must be a tuple of ints or a string like "
                            f"'3x224x224', got {shape!r}") from None
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
            raise TypeError(f"{op}: input_shape must hold ints, got {shape!r}")
        shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"{op}: input_shape must be non-empty with every size >= 1, got {shape}")
    return shape


def first_tensor(value):
    """The first Tensor in a module's output (a Tensor, or a tuple/list/dict holding some)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def _leaves(model):
    for name, module in model.named_modules():
        if next(iter(module.children()), None) is None:
            yield name or type(module).__name__, module


def _model_dtype(model):
    for p in model.parameters():
        if np.issubdtype(p.dtype, np.floating):
            return p.dtype
    return np.dtype(np.float32)


def trace(model, input_shape, dtype=None, op="summary", ops=True):
    """Forward a zero batch of one example of ``input_shape`` (no batch axis) through ``model``.

    ``dtype`` defaults to that of the model's first floating-point parameter (float32 for a
    model without parameters). Returns ``(x, output, calls)``: the input Tensor (shape
    ``(1, *input_shape)``), the model's output and the records in call order: a :class:`Call`
    per leaf-module call and, if ``ops``, an :class:`OpCall` per op applied outside atrous's
    own layers (see the module docstring).
    """
    shape = parse_shape(input_shape, op)
    x = Tensor(np.zeros((1,) + shape, dtype=dtype or _model_dtype(model)), requires_grad=True)
    calls = []
    leaves = {id(m) for _, m in _leaves(model)}
    stack = []  # (dotted path, module, len(calls) when it was entered) for each module running
    names = {id(p): n for n, p in model.named_parameters()}
    thread = threading.get_ident()

    def enter(name):
        def hook(module, args):
            stack.append((name, module, len(calls)))
        return hook

    def leave(name):
        def hook(module, args, output):
            start = stack.pop()[2] if stack else len(calls)
            if id(module) not in leaves:
                return
            replaced = not _is_atrous_layer(module) and any(isinstance(c, OpCall) for c in calls[start:])
            if not replaced:
                calls.append(Call(name, module, args, output))
        return hook

    def observe(fn, inputs, result):
        if threading.get_ident() != thread:
            return  # another thread's model
        kind, node = op_kind(fn), _onnx_node()
        if node is not None:
            kind = ONNX_NODE_KINDS.get((node.op, kind), kind)
        if kind is None or (stack and id(stack[-1][1]) in leaves and _is_atrous_layer(stack[-1][1])):
            return
        params, seen = [], set()
        for t in inputs:
            if isinstance(t, Tensor) and id(t) in names and id(t) not in seen:
                seen.add(id(t))
                params.append((names[id(t)], t))
        if kind == "matmul" and not params:
            return
        name = node.name if node is not None else _op_name(kind, params, stack[-1][0] if stack else "")
        calls.append(OpCall(name, kind, fn, inputs, result, params, node.op if node is not None else None))

    handles = []
    for path, m in model.named_modules():
        name = path or type(m).__name__  # the root's record is named after its class
        if ops:
            handles.append(m.register_forward_pre_hook(enter(path)))
            handles.append(m.register_forward_hook(leave(name)))
        elif id(m) in leaves:
            handles.append(m.register_forward_hook(
                lambda module, args, output, name=name: calls.append(Call(name, module, args, output))))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    if ops:
        autograd._observers.append(observe)
    try:
        with enable_grad():
            out = model(x)
    finally:
        if ops:
            autograd._observers.remove(observe)
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return x, out, calls
