"""Inference surgery: fold BatchNorm into the convolution before it, fuse the ReLU after it.

In eval mode BatchNorm is a fixed per-channel affine map, ``bn(z) = (z - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``, and a convolution is linear in its weight, so
``bn(conv(x, W) + b) = conv(x, W * s[o]) + (b - mean) * s + beta``: one convolution with a
rescaled weight and a new bias does both, and the BatchNorm pass over memory disappears
(``fuse_conv_bn_eval``, as ``torch.nn.utils.fusion.fuse_conv_bn_eval``). ``ConvReLU2d`` then
applies bias and ReLU in one in-place pass over the convolution's output
(``atrous.functional.fused.conv2d_relu``).

``fuse(model)`` (also ``model.fuse()``) does this across a model, in place. Which modules form a
pair is decided from the module tree, because a module's ``forward`` is opaque Python:

1. **Sequential neighbours.** In a ``Sequential`` (whose forward is the plain chain), a
   ``Conv2d`` directly followed by a ``BatchNorm2d``, and then optionally by a ``ReLU``, is
   fused; so is a ``Conv2d`` directly followed by a ``ReLU``. This covers ResNet's
   ``downsample.0``/``downsample.1`` and VGG-BN's ``features``.
2. **Named siblings.** In any other module, children ``conv<k>`` (a ``Conv2d``) and ``bn<k>`` (a
   ``BatchNorm2d``) with the same suffix ``k`` (``conv1``/``bn1``, ``conv``/``bn``) are folded
   when the conv is registered before the BatchNorm and its ``out_channels`` equals the
   BatchNorm's ``num_features``. That is torchvision's convention (ResNet's
   ``relu(bn1(conv1(x)))``); a module that names its layers so but applies ``bn1`` elsewhere
   (a pre-activation block that registers ``conv1`` first) would be mis-fused, so pass
   ``example_input`` to have the result checked, or name the groups yourself with ``groups=``.
   A ReLU is not fused under this rule: ResNet shares one ``relu`` module between the
   branch and the sum, so it cannot be removed.

The BatchNorm (and a fused ReLU) is replaced by ``Identity`` and the conv by the fused conv, so
``state_dict`` keys of the convolutions stay where they were (each gains a ``bias``). Folding
uses the running statistics, so it is only valid in eval mode: a model in training mode is
refused. A fused model is for inference; training it would train the folded weights with no
BatchNorm. Export to ONNX before fusing (the exporter does not know ``conv2d_relu``).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from .activation import ReLU
from .containers import Sequential
from .conv import Conv2d
from .linear import Identity
from .module import Module
from .normalization import BatchNorm2d
from .parameter import Parameter

__all__ = ["fuse_conv_bn_weights", "fuse_conv_bn_eval", "ConvReLU2d", "fuse"]


def fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b):
    """(weight, bias) of one convolution equal to conv(w, b) followed by eval-mode BatchNorm.

    Shape: conv_w (O, C/groups, KH, KW); conv_b, bn_rm, bn_rv, bn_w, bn_b (O,) or None (no bias:
    zero; no affine weight/bias: one/zero). Computed in float64 and rounded once to conv_w's
    dtype, so the fused layer is as close to the two-layer result as that dtype allows.

    >>> w, b = fuse_conv_bn_weights(np.ones((2, 1, 1, 1)), None, np.array([1.0, 0.0]),
    ...                             np.array([3.0, 0.0]), 1.0, None, np.array([0.0, 5.0]))
    >>> w.ravel().tolist(), b.tolist()
    ([0.5, 1.0], [-0.5, 5.0])
    """
    xp = get_array_module(conv_w)
    O, f64 = conv_w.shape[0], np.float64
    gamma = xp.ones(O, f64) if bn_w is None else xp.asarray(bn_w, f64)
    beta = xp.zeros(O, f64) if bn_b is None else xp.asarray(bn_b, f64)
    bias = xp.zeros(O, f64) if conv_b is None else xp.asarray(conv_b, f64)
    scale = gamma / xp.sqrt(xp.asarray(bn_rv, f64) + bn_eps)
    w = (xp.asarray(conv_w, f64) * scale.reshape(-1, 1, 1, 1)).astype(conv_w.dtype)
    b = ((bias - xp.asarray(bn_rm, f64)) * scale + beta).astype(conv_w.dtype)
    return w, b


def _data(t):
    return None if t is None else t.data


def _conv_like(conv, cls, weight, bias):
    """A new ``cls`` (Conv2d or ConvReLU2d) with conv's settings and the given arrays, without
    running the constructor's random initialisation (which would draw from the global RNG)."""
    new = cls.__new__(cls)
    Module.__init__(new)
    for key, value in conv.__dict__.items():
        if not key.startswith("_"):  # settings: in_channels, kernel_size, ..., training
            object.__setattr__(new, key, value)
    new.weight = Parameter(weight)
    if bias is None:
        new.register_parameter("bias", None)
    else:
        new.bias = Parameter(bias)
    return new


def fuse_conv_bn_eval(conv, bn):
    """A new ``Conv2d`` (with bias) equal to ``bn(conv(x))`` for eval mode; the inputs are untouched.

    Both modules must be in eval mode and the BatchNorm must track running statistics (in eval
    mode without them it normalises by the batch, which no fixed weight can do).

    Shape: conv (O, C/groups, KH, KW) weight; bn with num_features == O.

    >>> from atrous import nn
    >>> conv, bn = nn.Conv2d(3, 8, 3).eval(), nn.BatchNorm2d(8).eval()
    >>> fused = fuse_conv_bn_eval(conv, bn)
    >>> fused.bias.shape
    (8,)
    """
    op = "fuse_conv_bn_eval"
    if type(conv) is not Conv2d:
        raise TypeError(f"{op}: conv must be an atrous.nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(bn, BatchNorm2d):
        raise TypeError(f"{op}: bn must be an atrous.nn.BatchNorm2d, got {type(bn).__name__}")
    if conv.training or bn.training:
        raise ValueError(
            f"{op}: fusion is only valid in eval mode (it uses BatchNorm's running statistics), "
            f"but conv.training={conv.training}, bn.training={bn.training}; call .eval() first"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{op}: {bn!r} has no running statistics (track_running_stats=False), so in eval mode "
            "it normalises by each batch's statistics and cannot be folded into a weight"
        )
    if conv.out_channels != bn.num_features:
        raise ValueError(
            f"{op}: conv has out_channels={conv.out_channels} but bn has "
            f"num_features={bn.num_features}"
        )
    w, b = fuse_conv_bn_weights(conv.weight.data, _data(conv.bias), bn.running_mean.data,
                                bn.running_var.data, bn.eps, _data(bn.weight), _data(bn.bias))
    return _conv_like(conv, Conv2d, w, b)


class ConvReLU2d(Conv2d):
    """``relu(conv2d(x))`` with the bias and ReLU applied in one in-place pass over the
    convolution's output (``atrous.functional.fused.conv2d_relu``), as
    ``torch.ao.nn.intrinsic.ConvReLU2d``. Same parameters and ``state_dict`` keys as Conv2d.

    Shape: as Conv2d: (N, C_in, H, W) -> (N, C_out, H_out, W_out).

    >>> from atrous import nn
    >>> fused = ConvReLU2d.from_conv(nn.Conv2d(3, 4, 3, padding=1))
    >>> float(fused(np.random.rand(1, 3, 5, 5).astype(np.float32)).numpy().min()) >= 0
    True
    """

    @classmethod
    def from_conv(cls, conv):
        """A ConvReLU2d sharing ``conv``'s settings, weight and bias arrays."""
        if type(conv) is not Conv2d:
            raise TypeError(f"ConvReLU2d.from_conv: expected an atrous.nn.Conv2d, got {type(conv).__name__}")
        return _conv_like(conv, cls, conv.weight.data, _data(conv.bias))

    def forward(self, input):
        from ..functional.activation import relu
        from ..functional.fused import conv2d_relu

        if self.padding_mode != "zeros":
            return relu(super().forward(input))  # the padded copy is made by Conv2d.forward
        self._check_input(input)
        return conv2d_relu(input, self.weight, self.bias, self.stride, self.padding,
                           self.dilation, self.groups)


# ----- fuse(model) ---------------------------------------------------------------------------
def _uses(model):
    """How many places in the tree hold each module (a shared module must not be replaced)."""
    counts = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    return counts


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _find_groups(model):
    """[(conv path, bn path or None, relu path or None)] by the two rules of the module docstring."""
    uses = _uses(model)
    groups = []

    def single(m):
        return uses[id(m)] == 1

    for prefix, parent in model.named_modules():
        items = [(n, m) for n, m in parent._modules.items() if m is not None]
        if isinstance(parent, Sequential) and type(parent).forward is Sequential.forward:
            i = 0
            while i < len(items):
                name, m = items[i]
                nxt = [items[j][1] for j in (i + 1, i + 2) if j < len(items)]
                if type(m) is Conv2d and single(m) and nxt:
                    bn = relu = None
                    if isinstance(nxt[0], BatchNorm2d) and single(nxt[0]):
                        bn = items[i + 1][0]
                        if len(nxt) > 1 and type(nxt[1]) is ReLU and single(nxt[1]):
                            relu = items[i + 2][0]
                    elif type(nxt[0]) is ReLU and single(nxt[0]):
                        relu = items[i + 1][0]
                    if bn or relu:
                        groups.append((_join(prefix, name), bn and _join(prefix, bn), relu and _join(prefix, relu)))
                        i += 1 + bool(bn) + bool(relu)
                        continue
                i += 1
            continue
        order = {n: k for k, (n, _) in enumerate(items)}
        for name, m in items:
            partner = "bn" + name[4:]
            if not (name.startswith("conv") and type(m) is Conv2d and partner in order):
                continue
            bn = parent._modules[partner]
            if (isinstance(bn, BatchNorm2d) and order[name] < order[partner]
                    and m.out_channels == bn.num_features and single(m) and single(bn)):
                groups.append((_join(prefix, name), _join(prefix, partner), None))
    return groups


def _check_groups(model, groups):
    """Explicit ``groups`` as (conv, bn or None, relu or None) paths, with their types checked."""
    out = []
    for g in groups:
        names = [g] if isinstance(g, str) else list(g)
        mods = [model.get_submodule(n) for n in names]
        if not names or type(mods[0]) is not Conv2d:
            raise TypeError(f"fuse: a group must start with a Conv2d, got {names} ({[type(m).__name__ for m in mods]})")
        bn = relu = None
        for n, m in zip(names[1:], mods[1:]):
            if isinstance(m, BatchNorm2d) and bn is None and relu is None:
                bn = n
            elif type(m) is ReLU and relu is None:
                relu = n
            else:
                raise TypeError(
                    f"fuse: groups are [conv, bn], [conv, relu] or [conv, bn, relu]; got {names} "
                    f"({[type(m).__name__ for m in mods]})"
                )
        out.append((names[0], bn, relu))
    return out


def _set(model, path, module):
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path), name, module)


def _output(model, x):
    from ..autograd import no_grad

    with no_grad():
        return np.array(np.asarray(model(x).data), dtype=np.float64)


def fuse(model, groups=None, example_input=None, rtol=1e-3):
    """Fold every Conv2d -> BatchNorm2d pair of an eval-mode ``model`` in place; returns it.

    ``groups``: None finds the pairs by the rules of this module's docstring; or a list of
    dotted-path groups ``[conv, bn]``, ``[conv, bn, relu]`` or ``[conv, relu]`` (as
    ``torch.ao.quantization.fuse_modules``), taken as given. ``example_input``: when given, the
    model's output on it is computed before and after, and if they differ by more than ``rtol``
    times the largest output magnitude, every replacement is undone and ValueError is raised.

    Shape: any model; outputs keep their shapes.

    >>> from atrous import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    >>> fuse(net)
    Sequential(
      (0): ConvReLU2d(3, 8, kernel_size=(3, 3), stride=(1, 1))
      (1): Identity()
      (2): Identity()
    )
    """
    if not isinstance(model, Module):
        raise TypeError(f"fuse: expected an atrous.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError(
            "fuse: the model is in training mode; folding BatchNorm uses its running statistics, "
            "which is only valid in eval mode: call model.eval() first"
        )
    found = _find_groups(model) if groups is None else _check_groups(model, groups)
    before = None if example_input is None else _output(model, example_input)
    undo = []  # kept only for the check: otherwise old weights are freed pair by pair
    keep = undo.append if before is not None else (lambda item: None)
    for conv_path, bn_path, relu_path in found:
        conv = model.get_submodule(conv_path)
        fused = conv
        if bn_path is not None:
            bn = model.get_submodule(bn_path)
            fused = fuse_conv_bn_eval(conv, bn)  # raises for a training-mode conv/bn
            keep((bn_path, bn))
            _set(model, bn_path, Identity())
        if relu_path is not None:
            fused = ConvReLU2d.from_conv(fused)
            keep((relu_path, model.get_submodule(relu_path)))
            _set(model, relu_path, Identity())
        keep((conv_path, conv))
        _set(model, conv_path, fused)
    if before is not None:
        after = _output(model, example_input)
        err = float(np.max(np.abs(after - before))) if before.size else 0.0
        scale = float(np.max(np.abs(before))) if before.size else 0.0
        if after.shape != before.shape or err > rtol * max(scale, np.finfo(np.float32).tiny):
            for path, module in reversed(undo):
                _set(model, path, module)
            raise ValueError(
                f"fuse: the fused model's output differs from the original by {err:.3g} (output scale "
                f"{scale:.3g}, rtol={rtol}); some detected pair is not conv -> bn in forward. Groups "
                f"tried: {found}. The model was left unfused; pass groups= explicitly."
            )
    return model
