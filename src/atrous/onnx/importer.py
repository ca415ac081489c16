"""ONNX graph -> ``nn.Module`` that runs the graph with atrous ops.

Loading does all the checking up front: the file is parsed without following external-data
references, every tensor's declared size is validated before it is built, external data must
stay in the model's folder (``checks``), the graph is pruned to what its outputs need and put
in topological order, and each node is built by its handler in ``ops`` -- an unsupported op,
domain, opset or attribute value raises ``OnnxImportError`` naming the node, the op and the
opset. Running the module then only executes the prepared steps.

Initializers become parameters and buffers with their ONNX names turned into module paths:
``layer1.0.conv1.weight`` becomes that ``state_dict`` key (child modules are created for the
dotted prefixes), other characters become ``_``. Float initializers that feed a value the
graph computes with are ``Parameter``s, so the imported model can be fine-tuned; those used
only as shapes, axes, scales or BatchNorm running statistics are buffers.
"""
from __future__ import annotations

import os
import re
import threading

import numpy as np

from .. import nn
from ..autograd import Function
from ..tensor import Tensor
from . import checks
from .checks import OnnxImportError, OnnxRuntimeError
from .ops import HANDLERS, Attrs

MIN_OPSET, MAX_OPSET = 6, 28
DOMAINS = ("", "ai.onnx")

# Inputs that are shapes, axes, scales or statistics: initializers used only here are buffers.
STATIC_INPUTS = {
    "BatchNormalization": {3, 4}, "Reshape": {1}, "Squeeze": {1}, "Unsqueeze": {1}, "Pad": {1, 2, 3},
    "Resize": {1, 2, 3}, "Upsample": {1}, "Clip": {1, 2}, "Dropout": {1, 2}, "ReduceMean": {1},
    "Gather": {1}, "Slice": {1, 2, 3, 4},
}


_running = threading.local()  # the node whose step runs in this thread (see current_node)


def current_node():
    """The node whose step is running in this thread (``.name``, ``.op``), or None outside an
    ``OnnxModel`` forward; ``atrous.analysis.summary`` names its rows after it."""
    return getattr(_running, "node", None)


class _Node:
    """What a handler sees of one NodeProto."""

    def __init__(self, proto, index, opset):
        self.name = proto.name or f"{proto.op_type}_{index}"
        self.op, self.domain, self.opset = proto.op_type, proto.domain, opset
        self.inputs, self.outputs = list(proto.input), list(proto.output)
        self.where = f"node {self.name!r} ({self.op}, opset {opset})"
        self.stats_are_buffers = False
        self.constant = None
        self.ranks = [None] * len(self.inputs)  # input ranks known at load time (else None)

    def error(self, msg):
        return OnnxImportError(f"{self.where}: {msg}")


class OnnxModel(nn.Module):
    """An imported ONNX graph. Call it with the graph inputs, in order (or by name).

    Returns a Tensor for a single-output graph, else a tuple in the graph's output order.
    ``input_names``/``output_names`` list the graph's; ``opset`` is its ai.onnx opset. The
    model starts in eval mode (BatchNorm uses the stored statistics, Dropout is the identity);
    ``train()`` makes BatchNorm use batch statistics and update its running buffers and
    Dropout drop, as the equivalent PyTorch layers do when fine-tuning.
    """

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_graph", None)

    def forward(self, *args, **named):
        g = self._graph
        env = {name: self._initializer(path) for name, path in g["initializers"].items()}
        env.update(g["constants"])
        if len(args) > len(g["inputs"]):
            raise TypeError(f"OnnxModel: the graph takes {len(g['inputs'])} inputs "
                            f"({', '.join(g['inputs'])}), got {len(args)}")
        values = dict(zip(g["inputs"], args))
        for k, v in named.items():
            if k not in g["inputs"]:
                raise TypeError(f"OnnxModel: unknown input {k!r}; the graph's inputs are {g['inputs']}")
            values[k] = v
        for name in g["inputs"]:
            if name not in values:
                raise TypeError(f"OnnxModel: missing graph input {name!r}")
            env[name] = _check_input(name, values[name], g["input_specs"][name], self._cast_dtype())
        outer = current_node()  # an OnnxModel inside another one's step
        for node, run in g["steps"]:
            vals = [env[n] if n else None for n in node.inputs]
            while vals and vals[-1] is None:
                vals.pop()
            _running.node = node
            try:
                outs = run(vals, self.training)
            except (OnnxRuntimeError, OnnxImportError):
                raise
            except Exception as e:  # name the node: a bare NumPy error says nothing about the graph
                raise OnnxRuntimeError(f"{node.where} failed: {type(e).__name__}: {e}") from e
            finally:
                _running.node = outer
            for name, val in zip(node.outputs, outs):
                if name:
                    env[name] = _zero_d(val)
        outs = [_as_output(env[n]) for n in g["outputs"]]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _cast_dtype(self):
        """The float dtype of the parameters when ``to``/``double`` changed it, else None."""
        for p in self.parameters():
            return p.dtype if p.dtype != self._graph["param_dtype"] else None
        return None

    def _initializer(self, path):
        owner = self
        *parents, leaf = path
        for p in parents:
            owner = owner._modules[p]
        v = getattr(owner, leaf)
        return v if np.issubdtype(v.dtype, np.floating) else v.data

    @property
    def input_names(self):
        return list(self._graph["inputs"])

    @property
    def output_names(self):
        return list(self._graph["outputs"])

    @property
    def opset(self):
        return self._graph["opset"]

    def extra_repr(self):
        ops = {}
        for node, _ in self._graph["steps"]:
            ops[node.op] = ops.get(node.op, 0) + 1
        listing = ", ".join(f"{k}x{v}" for k, v in sorted(ops.items()))
        return f"opset={self.opset}, inputs={self.input_names}, outputs={self.output_names}, ops: {listing}"


class _ArrayOf(Function):
    def forward(self, a):
        return np.asarray(a)

    def backward(self, g):
        return (g,)


def _zero_d(v):
    """Full reductions leave a NumPy scalar inside a Tensor; make it a 0-d array (graph kept)."""
    if isinstance(v, Tensor) and isinstance(v.data, np.generic):
        return _ArrayOf.apply(v)
    return v


def _as_output(v):
    return v if isinstance(v, Tensor) else Tensor(np.asarray(v))


def _check_input(name, value, spec, cast_dtype=None):
    dtype, dims = spec
    arr = value.data if isinstance(value, Tensor) else np.asarray(value)
    if dtype is not None and np.issubdtype(dtype, np.floating) and cast_dtype is not None:
        dtype = cast_dtype  # the model was converted (model.double()): its float inputs follow
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"OnnxModel: input {name!r} must have dtype {dtype}, got {arr.dtype}")
    if dims is not None:
        if arr.ndim != len(dims) or any(d is not None and d != n for d, n in zip(dims, arr.shape)):
            want = tuple("?" if d is None else d for d in dims)
            raise ValueError(f"OnnxModel: input {name!r} must have shape {want}, got {arr.shape}")
    if isinstance(value, Tensor):
        return value
    return Tensor(arr) if np.issubdtype(arr.dtype, np.floating) else arr


# ----- loading -----------------------------------------------------------------------------
def _parse(source, base_dir):
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source, base_dir
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"onnx.load: no such file {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        base_dir = base_dir if base_dir is not None else os.path.dirname(os.path.abspath(path))
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)  # never follows external-data references by itself
    except Exception as e:
        raise OnnxImportError(f"not a valid ONNX model file: {e}") from None
    return model, base_dir


def _opset(model):
    versions = [o.version for o in model.opset_import if o.domain in DOMAINS]
    if not versions:
        if model.ir_version and model.ir_version < 3:
            return MIN_OPSET  # IR < 3 had no opset_import; treat as the oldest supported
        raise OnnxImportError("the model imports no ai.onnx opset")
    v = max(versions)
    if not MIN_OPSET <= v <= MAX_OPSET:
        raise OnnxImportError(f"ai.onnx opset {v} is not supported (supported: {MIN_OPSET}-{MAX_OPSET})")
    return v


def _attributes(proto, node, base_dir):
    from onnx import AttributeProto, helper

    out = {}
    for attr in proto.attribute:
        if attr.ref_attr_name:
            raise node.error(f"attribute {attr.name} refers to a function attribute; not supported")
        if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            raise node.error(f"attribute {attr.name} holds a subgraph; control flow is not supported")
        if attr.type == AttributeProto.TENSOR:
            out[attr.name] = checks.tensor_to_array(attr.t, f"{node.where} attribute {attr.name}", base_dir)
        elif attr.type == AttributeProto.SPARSE_TENSOR:
            raise node.error(f"attribute {attr.name} is a sparse tensor; not supported")
        else:
            v = helper.get_attribute_value(attr)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out[attr.name] = v
    return out


def _value_spec(vi, what):
    """(dtype, dims) of a graph input; dims entries None where symbolic."""
    t = vi.type
    kind = t.WhichOneof("value")
    if kind != "tensor_type":
        raise OnnxImportError(f"{what} {vi.name!r} has a {kind or 'missing'} type; only tensors are supported")
    dtype = checks.np_dtype(t.tensor_type.elem_type, f"{what} {vi.name!r}") if t.tensor_type.elem_type else None
    if not t.tensor_type.HasField("shape"):
        return dtype, None
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.tensor_type.shape.dim]
    return dtype, dims


def _prune_and_sort(graph, available):
    """Nodes the outputs depend on, in a topological order (stable w.r.t. the file's order)."""
    producer = {}
    for i, n in enumerate(graph.node):
        for o in n.output:
            if o:
                producer[o] = i
    needed, stack = set(), [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        i = producer.get(name)
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(x for x in graph.node[i].input if x)
    for o in graph.output:
        if o.name not in producer and o.name not in available:
            raise OnnxImportError(f"graph output {o.name!r} is not produced by any node or initializer")
    order, done = [], set(available)
    pending = sorted(needed)
    while pending:
        progressed, rest = False, []
        for i in pending:
            n = graph.node[i]
            if all(x in done or not x for x in n.input):
                order.append(i)
                done.update(o for o in n.output if o)
                progressed = True
            else:
                rest.append(i)
        if not progressed:
            n = graph.node[rest[0]]
            missing = [x for x in n.input if x and x not in done]
            cyclic = [x for x in missing if x in producer]
            why = "a cycle through " + ", ".join(map(repr, cyclic)) if cyclic else \
                "no node, initializer or graph input produces " + ", ".join(map(repr, missing))
            raise OnnxImportError(f"node {n.name or n.op_type!r} ({n.op_type}): {why}")
        pending = rest
    return order


_SEGMENT = re.compile(r"[^0-9A-Za-z_]")


def _module_path(name, taken, leaves, prefixes):
    """Module path (tuple of names) for an initializer: dotted ONNX names become nested modules."""
    segs = [(_SEGMENT.sub("_", s) or "_") for s in name.split(".")]
    segs = [s + "_" if hasattr(nn.Module, s) or s in ("_graph",) else s for s in segs]
    path = tuple(segs)
    ok = path not in taken and path not in prefixes and all(path[:i] not in leaves for i in range(1, len(path)))
    if not ok:  # a leaf where a module is needed (or the reverse): flatten, then dedupe
        base = "_".join(segs)
        path, k = (base,), 1
        while path in taken or path in prefixes:
            path, k = (f"{base}_{k}",), k + 1
    taken.add(path)
    leaves.add(path)
    for i in range(1, len(path)):
        prefixes.add(path[:i])
    return path


def _register(root, path, array, as_parameter):
    owner = root
    for seg in path[:-1]:
        if seg not in owner._modules:
            owner.add_module(seg, nn.Module())
        owner = owner._modules[seg]
    if as_parameter:
        owner.register_parameter(path[-1], nn.Parameter(array))
    else:
        owner.register_buffer(path[-1], array)


def load(source, *, base_dir=None):
    """Import an ONNX model as an ``nn.Module`` that runs it with atrous ops.

    ``source``: a path, the file's bytes, or an ``onnx.ModelProto``. External data files are
    read only from inside the model's folder (``base_dir`` for bytes). Raises
    ``OnnxImportError`` (a ValueError) for anything unsupported or unsafe, at load time.

    >>> model = load("resnet18.onnx")                         # doctest: +SKIP
    >>> model(np.zeros((1, 3, 224, 224), np.float32)).shape   # doctest: +SKIP
    (1, 1000)
    """
    model, base_dir = _parse(source, base_dir)
    opset = _opset(model)
    graph = model.graph
    if len(graph.sparse_initializer):
        raise OnnxImportError("sparse initializers are not supported")

    arrays = {}
    for t in graph.initializer:
        arrays[t.name] = checks.tensor_to_array(t, f"initializer {t.name!r}", base_dir)
    inputs = [vi for vi in graph.input if vi.name not in arrays]
    specs = {vi.name: _value_spec(vi, "graph input") for vi in inputs}
    available = set(arrays) | set(specs)
    order = _prune_and_sort(graph, available)

    nodes, uses = [], {}
    for i in order:
        proto = graph.node[i]
        node = _Node(proto, i, opset)
        if proto.domain not in DOMAINS:
            raise node.error(f"operator domain {proto.domain!r} is not supported (only ai.onnx)")
        if proto.op_type not in HANDLERS:
            raise node.error(f"operator {proto.op_type} is not supported; supported: "
                             f"{', '.join(sorted(HANDLERS))}")
        nodes.append((node, proto))
        for pos, name in enumerate(proto.input):
            uses.setdefault(name, []).append((proto.op_type, pos))

    steps, constants = [], {}
    ranks = {name: a.ndim for name, a in arrays.items()}
    for vi in list(graph.value_info) + inputs:
        t = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        if t is not None and t.HasField("shape"):
            ranks.setdefault(vi.name, len(t.shape.dim))
    for node, proto in nodes:
        node.ranks = [ranks.get(n) for n in node.inputs]
        attrs = Attrs(node, _attributes(proto, node, base_dir))
        run = HANDLERS[node.op](node, attrs)
        extra = attrs.leftovers()
        if extra:
            raise node.error(f"attribute(s) {', '.join(extra)} not supported")
        if node.op == "BatchNormalization":
            node.stats_are_buffers = all(n in arrays for n in node.inputs[3:5])
        if node.constant is not None:  # Constant nodes are evaluated once, here
            constants[node.outputs[0]] = node.constant
            continue
        steps.append((node, run))

    root = OnnxModel()
    taken, leaves, prefixes = set(), set(), set()
    # Register in a stable order that puts dotted (module-like) names first.
    paths = {}
    for name in arrays:
        if name not in uses and name not in {o.name for o in graph.output}:
            continue  # unused initializer: not part of the model
        paths[name] = _module_path(name, taken, leaves, prefixes)
    for name, path in paths.items():
        arr = arrays[name]
        static = all(pos in STATIC_INPUTS.get(op, ()) for op, pos in uses.get(name, []))
        as_param = np.issubdtype(arr.dtype, np.floating) and not static
        _register(root, path, arr, as_param)

    object.__setattr__(root, "_graph", {
        "opset": opset, "inputs": [vi.name for vi in inputs], "input_specs": specs,
        "outputs": [o.name for o in graph.output], "initializers": paths, "constants": constants,
        "steps": steps,
        "param_dtype": next((p.dtype for p in root.parameters()), None),
    })
    root.eval()
    return root
