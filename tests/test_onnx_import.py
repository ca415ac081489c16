"""End-to-end ONNX import: PyTorch models exported with ``torch.onnx.export`` run in atrous.

Each model is built here in PyTorch, exported (the TorchScript exporter, ``dynamo=False``: the
dynamo exporter needs ``onnxscript``, which the dev extra does not install), imported with
``atrous.onnx.load`` and run; outputs must equal PyTorch's and onnxruntime's to 1e-4 relative.
The imported model is also differentiable: its gradients equal PyTorch's, ``state_dict`` keys
keep PyTorch's names, and ``train()`` makes BatchNorm/Dropout behave as PyTorch's do.
"""
from __future__ import annotations

import io
import os
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")

import atrous  # noqa: E402
from atrous.onnx import OnnxRuntimeError, load  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))


def _export(torch, model, x, opset=17, fold=True):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), buf, dynamo=False, opset_version=opset,
                          do_constant_folding=fold, input_names=["x"], output_names=["y"])
    return buf.getvalue()


def _ort(data, x):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _close(got, want, rtol=1e-4):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    # relative to the output's scale: a near-zero logit has no meaningful relative error
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


def _check(torch, model, x, **export_kw):
    model.eval()
    data = _export(torch, model, x, **export_kw)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    m = load(data)
    with atrous.no_grad():
        got = m(x)
    _close(got, want)
    _close(got, _ort(data, x))
    return m, data


# ----- models --------------------------------------------------------------------------------
def _alexnet_lrn(torch):
    nn, F = torch.nn, torch.nn.functional

    class _LRNFn(torch.autograd.Function):
        """PyTorch's exporter writes local_response_norm as its decomposition; this keeps one
        ONNX LRN node (same definition: sum over the channel window / size)."""

        @staticmethod
        def forward(ctx, x, size, alpha, beta, k):
            return F.local_response_norm(x, size, alpha, beta, k)

        @staticmethod
        def symbolic(g, x, size, alpha, beta, k):
            return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)

    class LRN(nn.Module):
        def __init__(self, size, alpha, beta, k):
            super().__init__()
            self.args = (size, alpha, beta, k)

        def forward(self, x):
            return _LRNFn.apply(x, *self.args)

    # Odd LRN sizes only: for even ones PyTorch's window is the mirror image of ONNX's.
    return nn.Sequential(
        nn.Conv2d(3, 16, 11, stride=4, padding=2), nn.ReLU(), LRN(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(16, 24, 5, padding=2, groups=2), nn.ReLU(), LRN(3, 1e-3, 0.75, 1.0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2, stride=1),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10),
    )


def _fcn(torch):
    nn, F = torch.nn, torch.nn.functional

    class FCN(nn.Module):
        def __init__(self):
            super().__init__()
            self.down1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.down2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
            self.pool = nn.MaxPool2d(2)
            self.up1 = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
            self.up2 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
            self.score = nn.Conv2d(16, 5, 1)

        def forward(self, x):
            a = self.down1(x)                      # (N, 8, H, W)
            b = self.down2(a)                      # (N, 16, H/2, W/2)
            c = self.up1(self.pool(b))             # (N, 8, H/2, W/2)
            d = self.up2(torch.cat([b[:, :8], c], 1))   # (N, 8, H, W)
            s = self.score(torch.cat([a, d], 1))
            return F.interpolate(s, scale_factor=2, mode="bilinear", align_corners=False) + \
                F.interpolate(s, scale_factor=2, mode="nearest")

    return FCN()


def _mobilenet_block(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c=8, expand=4):
            super().__init__()
            h = c * expand
            self.stem = nn.Sequential(nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
                                      nn.Hardswish())
            self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
            self.depthwise = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
                                           nn.BatchNorm2d(h), nn.ReLU6())
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(h, 8, 1), nn.ReLU(), nn.Conv2d(8, h, 1),
                                    nn.Hardsigmoid())
            self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c, 6), nn.PReLU(), nn.Linear(6, 4))

        def forward(self, x):
            x = self.stem(x)
            y = self.depthwise(self.expand(x))
            y = self.project(y * self.se(y))
            z = (x + y).mean(dim=(2, 3), keepdim=True)
            return torch.log_softmax(self.head(z), dim=1)

    return Block()


def _randomize_bn(torch, model):
    from torch_reference_models import randomize_batchnorm

    return randomize_batchnorm(model)


# ----- tests ---------------------------------------------------------------------------------
def test_resnet18_matches_torch_and_onnxruntime(torch):
    from torch_reference_models import resnet18

    torch.manual_seed(0)
    model = _randomize_bn(torch, resnet18(num_classes=10))
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
    m, _ = _check(torch, model, x)
    assert m.opset == 17


def test_resnet18_keeps_torch_names_and_gradients(torch):
    """Unfolded export: initializers named as PyTorch's state_dict, BatchNorm nodes kept;
    the imported model's parameter gradients equal PyTorch's."""
    from torch_reference_models import resnet18

    torch.manual_seed(1)
    model = _randomize_bn(torch, resnet18(num_classes=10)).eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    m, data = _check(torch, model, x, fold=False)
    sd = m.state_dict()
    torch_sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(sd) == set(torch_sd)
    for k in torch_sd:
        np.testing.assert_array_equal(sd[k], torch_sd[k].numpy())
    params = dict(m.named_parameters())
    assert "conv1.weight" in params and "bn1.running_mean" not in params
    # gradients of a weighted sum of the logits, in float64
    r = np.random.default_rng(2).standard_normal((2, 10))
    m.double()
    out = m(x.astype(np.float64))
    (out * r).sum().backward()
    model.double().zero_grad()
    (model(torch.from_numpy(x.astype(np.float64))) * torch.from_numpy(r)).sum().backward()
    for name in ("conv1.weight", "layer2.0.downsample.0.weight", "bn1.weight", "fc.bias"):
        want = dict(model.named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(params[name].grad, want, rtol=1e-7, atol=1e-10, err_msg=name)


def test_alexnet_style_with_lrn(torch):
    torch.manual_seed(2)
    x = np.random.default_rng(3).standard_normal((2, 3, 67, 67)).astype(np.float32)
    _, data = _check(torch, _alexnet_lrn(torch), x)
    ops = [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert ops.count("LRN") == 2 and "Dropout" not in ops or ops.count("LRN") == 2


def test_fcn_with_conv_transpose_and_resize(torch):
    torch.manual_seed(3)
    model = _randomize_bn(torch, _fcn(torch))
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 12)).astype(np.float32)
    m, data = _check(torch, model, x)
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert {"ConvTranspose", "Resize", "Concat"} <= ops


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_mobilenet_block_across_opsets(torch, opset):
    """Depthwise conv, ReLU6 (Clip), Hardswish/Hardsigmoid, squeeze-excite, PReLU, LogSoftmax;
    opset 11 exercises the pre-13 Softmax axis and Unsqueeze/ReduceMean attribute forms."""
    torch.manual_seed(4)
    model = _randomize_bn(torch, _mobilenet_block(torch))
    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16)).astype(np.float32)
    m, _ = _check(torch, model, x, opset=opset)
    assert m.opset == opset


def test_train_mode_updates_batchnorm_like_torch(torch):
    """Fine-tuning: in train() an imported BatchNorm uses batch statistics and updates its
    running buffers with PyTorch's momentum, as the original module does."""
    nn = torch.nn
    torch.manual_seed(5)
    model = _randomize_bn(torch, nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())).eval()
    x = np.random.default_rng(6).standard_normal((4, 3, 8, 8)).astype(np.float32)
    m, _ = _check(torch, model, x, fold=False)
    m.train()
    model.train()
    got = m(x)
    want = model(torch.from_numpy(x)).detach().numpy()
    _close(got, want)
    np.testing.assert_allclose(m.state_dict()["1.running_var"], model[1].running_var.numpy(), rtol=1e-5)
    np.testing.assert_allclose(m.state_dict()["1.running_mean"], model[1].running_mean.numpy(), rtol=1e-5,
                               atol=1e-7)


def test_inputs_are_checked_with_clear_errors(torch):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 2))
    x = np.zeros((1, 3, 8, 8), np.float32)
    m = load(_export(torch, model.eval(), x))
    with pytest.raises(TypeError, match="input 'x' must have dtype float32, got float64"):
        m(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"input 'x' must have shape \(1, 3, 8, 8\), got \(1, 3, 9, 8\)"):
        m(np.zeros((1, 3, 9, 8), np.float32))
    with pytest.raises(TypeError, match="missing graph input 'x'"):
        m()


def test_runtime_failure_names_the_node():
    """A shape only known at run time (a dynamic batch Reshape gone wrong) fails naming the node."""
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("s", TensorProto.INT64, [2], [4, -1])])
    m = load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert m(np.zeros((2, 6), np.float32)).shape == (4, 3)
    with pytest.raises(OnnxRuntimeError, match=r"node 'bad_reshape' \(Reshape, opset 17\).*cannot reshape"):
        m(np.zeros((3, 6), np.float32))


def test_cli_run_on_npy_and_png(torch, tmp_path):
    from atrous.cli import main

    torch.manual_seed(6)
    model = _mobilenet_block(torch).eval()
    x = np.random.default_rng(7).random((1, 3, 16, 16)).astype(np.float32)
    path = tmp_path / "m.onnx"
    path.write_bytes(_export(torch, model, x))
    np.save(tmp_path / "x.npy", x[0])  # no batch axis: the command adds it
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                 "--top", "2"]) == 0
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    _close(np.load(tmp_path / "y.npy", allow_pickle=False), want)

    Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    img = (np.random.default_rng(8).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    assert main(["run", str(path), "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "z.npy"),
                 "--imagenet"]) == 0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    xi = ((img / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(xi)).numpy()
    _close(np.load(tmp_path / "z.npy", allow_pickle=False), want)


def _one_node(op, inputs, attrs, opset=19, inits=()):
    """A float64 graph of one node over graph inputs ``inputs`` (names) plus initializers."""
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="n", **attrs)], "g",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in inputs
         if n and n not in {t.name for t in inits}],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], list(inits))
    return load(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))


@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 2, 0], dilations=[1, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[2, 0, 1, 1], count_include_pad=0,
                         ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], dilations=[2, 1], auto_pad="SAME_LOWER")),
    ("LRN", dict(size=4, alpha=0.1, beta=0.75, bias=1.5)),
    ("HardSwish", {}),
])
def test_gradients_of_imported_window_ops(op, attrs):
    """float64 finite differences through imported nodes (asymmetric pads, ceil mode, even LRN)."""
    from gradcheck import check_gradients

    m = _one_node(op, ["x"], attrs).requires_grad_(False)
    x = np.random.default_rng(9).standard_normal((2, 4, 7, 6))
    check_gradients(lambda t: m(t), x)


def test_gradients_of_imported_conv_resize_clip_prelu():
    from gradcheck import check_gradients
    from onnx import TensorProto, helper

    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, 5, 4))
    w = rng.standard_normal((4, 1, 3, 2))  # grouped, asymmetric pads, SAME_UPPER-free
    conv = _one_node("Conv", ["x", "w"], dict(group=2, pads=[1, 0, 0, 1], strides=[2, 1]))
    check_gradients(lambda a, b: conv(x=a, w=b), x, w)
    sizes = helper.make_tensor("sz", TensorProto.INT64, [4], [2, 2, 7, 9])
    for mode, extra in (("linear", {}), ("cubic", dict(exclude_outside=1)), ("nearest", {})):
        r = _one_node("Resize", ["x", "", "", "sz"], dict(mode=mode, **extra), inits=[sizes])
        check_gradients(lambda a: r(a), x)
    lo = helper.make_tensor("lo", TensorProto.DOUBLE, [], [-0.5])
    hi = helper.make_tensor("hi", TensorProto.DOUBLE, [], [0.7])
    c = _one_node("Clip", ["x", "lo", "hi"], {}, inits=[lo, hi])
    check_gradients(lambda a: c(a), x)
    p = _one_node("PRelu", ["x", "s"], {})
    check_gradients(lambda a, s: p(x=a, s=s), x, rng.standard_normal((2, 1, 1)))


@pytest.mark.parametrize("name, shape", [("lenet5", (2, 1, 32, 32)), ("resnet18", (1, 3, 32, 32))])
def test_atrous_export_round_trip(tmp_path, name, shape):
    """The zoo exported by ``atrous.onnx.export`` imports back with identical outputs."""
    from atrous import models
    from atrous.onnx import export

    model = models.get_model(name).eval()
    path = tmp_path / "m.onnx"
    export(model, str(path), shape)
    x = np.random.default_rng(11).standard_normal(shape).astype(np.float32)
    with atrous.no_grad():
        np.testing.assert_array_equal(np.asarray(load(path)(x)), np.asarray(model(x)))
    assert callable(atrous.onnx.export)  # still the function after the submodule was imported
