"""ONNX export: every zoo model and every mapped op, run by onnxruntime against atrous itself.

Each model is exported (``onnx.checker`` runs inside ``export``), loaded by onnxruntime, and
fed an input different from the one traced; the result must equal atrous's forward pass to
1e-4 relative. BatchNorm layers get random affine parameters and running statistics first,
so the eval-mode normalisation is really exercised. vgg16 repeats vgg16_bn's structure
without BN and takes ~25 s to build and export 528 MB, so it runs only with
ATROUS_SLOW_TESTS=1.
"""
import os

import numpy as np
import pytest

import atrous
from atrous import functional as F
from atrous import models, nn

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[dev]')")

from atrous.onnx.exporter import export  # noqa: E402


def _session(proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.weight.data[...] = 0.5 + rng.random(c)
            m.bias.data[...] = 0.2 * rng.standard_normal(c)
            m.running_mean.data[...] = 0.2 * rng.standard_normal(c)
            m.running_var.data[...] = 0.5 + rng.random(c)
    return model


def _check(model, shape, opset=17, seed=1, rtol=1e-4, **kw):
    """Export, run in onnxruntime on a fresh input, compare with atrous in eval mode."""
    proto = export(model, None, shape, opset=opset, **kw)
    x = np.random.default_rng(seed).standard_normal(shape).astype(kw.get("dtype", np.float32))
    got = _session(proto).run(None, {"input": x})
    model.eval()
    with atrous.no_grad():
        want = model(atrous.Tensor(x))
    want = [w.data for w in (want if isinstance(want, (tuple, list)) else [want])]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.abs(w).max()))
    return proto


# ----- the zoo --------------------------------------------------------------------------------
_SLOW = pytest.mark.skipif(not os.environ.get("ATROUS_SLOW_TESTS"),
                           reason="large weights (10-30 s each to build, export and load); set ATROUS_SLOW_TESTS=1")
ZOO = [
    ("resnet18", {}, (2, 3, 64, 64)),
    ("resnet34", {}, (1, 3, 64, 64)),
    ("resnet50", {}, (1, 3, 64, 64)),
    pytest.param("wide_resnet50_2", {}, (1, 3, 64, 64), marks=_SLOW),  # resnet50's graph, wider
    ("alexnet", {"num_classes": 10}, (1, 3, 64, 64)),  # features 1x1 -> adaptive pool 6x6 (bin matrices)
    ("alexnet_original", {"groups": 2, "num_classes": 10}, (1, 3, 227, 227)),  # LRN, grouped convs
    pytest.param("vgg16_bn", {}, (1, 3, 32, 32), marks=_SLOW),  # test_vgg_structure runs by default
    pytest.param("vgg16", {}, (1, 3, 32, 32), marks=_SLOW),
    ("wrn_16_4", {}, (2, 3, 32, 32)),
    pytest.param("wrn_28_10", {}, (1, 3, 32, 32), marks=_SLOW),  # wrn_16_4's graph, deeper and wider
    ("lenet5", {}, (2, 1, 32, 32)),
    ("lenet5", {"activation": "relu", "pool": "max", "input_size": 28}, (2, 1, 28, 28)),
    ("digits_cnn", {}, (3, 1, 8, 8)),
]


@pytest.mark.parametrize("name,kwargs,shape", ZOO)
def test_zoo_model_exports_and_matches(name, kwargs, shape):
    model = _randomize_bn(models.get_model(name, **kwargs))
    _check(model, shape)


def test_inception_block_concat():
    block = _randomize_bn(models.inception_3a())
    proto = _check(block, (2, 192, 9, 9))
    assert [n.op_type for n in proto.graph.node].count("Concat") == 1


def test_every_zoo_model_is_covered():
    covered = {getattr(p, "values", p)[0] for p in ZOO}
    assert covered == set(models.list_models())


def test_vgg_structure():
    """VGG.forward (BN features, 7x7 adaptive pool of a 1x1 map, flatten, dropout) with a small
    head: the full classifier's 120M weights make vgg16/vgg16_bn slow tests."""
    from atrous.models.vgg import CFG_D, make_layers

    model = models.VGG.__new__(models.VGG)
    nn.Module.__init__(model)
    model.features = make_layers(CFG_D, batch_norm=True)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 10))
    _check(_randomize_bn(model), (1, 3, 32, 32))


def test_graph_names_state_dict_keys_and_scopes():
    model = models.resnet18(num_classes=10)
    proto = export(model, None, (1, 3, 32, 32))
    inits = {i.name: i for i in proto.graph.initializer}
    # Parameters and buffers keep their state_dict names (num_batches_tracked is not used).
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert key not in inits
            continue
        assert key in inits, key
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(inits[key]), np.asarray(value))
    names = {n.name for n in proto.graph.node}
    assert {"layer1.0.conv1/Conv", "layer2.0.downsample.0/Conv", "fc/Gemm", "layer1.0/Add"} <= names
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Add") == 8 and ops.count("Conv") == 20 and ops.count("BatchNormalization") == 20
    assert proto.opset_import[0].version == 17 and proto.producer_name == "atrous"
    (inp,) = proto.graph.input
    assert inp.name == "input"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [1, 10]


def test_writes_file_atomically_and_restores_training_mode(tmp_path):
    model = models.digits_cnn()
    model.train()
    model.classifier[3].eval()  # a mixed state must come back as it was
    before = [m.training for m in model.modules()]
    path = tmp_path / "digits.onnx"
    proto = export(model, path, (1, 1, 8, 8))
    assert [m.training for m in model.modules()] == before
    assert os.listdir(tmp_path) == ["digits.onnx"]  # no temporary file left behind
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded)
    assert loaded.SerializeToString() == proto.SerializeToString()
    # Dropout (train mode before export) is gone: eval semantics, deterministic.
    assert "Dropout" not in {n.op_type for n in loaded.graph.node}


def test_float64_model():
    # onnxruntime has no float64 Conv kernel; Gemm, Tanh and pooling-free layers it runs.
    model = _randomize_bn(nn.Sequential(nn.Linear(5, 4, dtype=np.float64), nn.BatchNorm1d(4, dtype=np.float64),
                                        nn.Tanh(), nn.Linear(4, 3, dtype=np.float64)))
    proto = export(model, None, (6, 5))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = np.random.default_rng(0).standard_normal((6, 5))
    got = _session(proto).run(None, {"input": x})[0]
    model.eval()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model(x).data, rtol=1e-12, atol=1e-12)


# ----- single ops and layers -----------------------------------------------------------------
class Lambda(nn.Module):
    """A module whose forward is a function of its input (ops written inside forward)."""

    def __init__(self, fn, *children):
        super().__init__()
        self.fn = fn
        self.body = nn.Sequential(*children)

    def forward(self, x):
        return self.fn(self.body(x))


LAYERS = [
    ("maxpool_ceil_pad", lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8, 8)),
    ("maxpool_ceil_odd", lambda: nn.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 9)),
    ("maxpool_dilated", lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=2), (1, 2, 11, 10)),
    ("avgpool_pad_include", lambda: nn.AvgPool2d(3, 2, padding=1), (2, 3, 9, 8)),
    ("avgpool_pad_exclude", lambda: nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 3, 9, 8)),
    ("avgpool_ceil", lambda: nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
     (1, 3, 8, 8)),
    ("avgpool_ceil_include", lambda: nn.AvgPool2d(2, ceil_mode=True), (1, 3, 7, 7)),
    ("avgpool_divisor", lambda: nn.AvgPool2d(2, divisor_override=3), (1, 2, 6, 6)),
    ("adaptive_avg_bins", lambda: nn.AdaptiveAvgPool2d((3, 4)), (2, 3, 7, 10)),
    ("adaptive_avg_stride", lambda: nn.AdaptiveAvgPool2d(2), (2, 3, 8, 6)),
    ("adaptive_avg_upsample", lambda: nn.AdaptiveAvgPool2d(5), (1, 2, 2, 3)),
    ("adaptive_max_bins", lambda: nn.AdaptiveMaxPool2d((3, 2)), (2, 3, 7, 5)),
    ("adaptive_max_global", lambda: nn.AdaptiveMaxPool2d(1), (2, 3, 7, 5)),
    ("lrn_odd", lambda: nn.LocalResponseNorm(3, alpha=0.1, beta=0.7, k=1.5), (2, 6, 4, 4)),
    ("lrn_even", lambda: nn.LocalResponseNorm(4, alpha=0.1, beta=0.7, k=1.5), (2, 6, 4, 4)),
    ("prelu_channels", lambda: nn.PReLU(3, init=0.1), (2, 3, 4, 4)),
    ("prelu_shared", lambda: nn.PReLU(), (2, 3, 4)),
    ("leaky_elu_tanh_sigmoid", lambda: nn.Sequential(nn.LeakyReLU(0.2), nn.ELU(0.7), nn.Tanh(), nn.Sigmoid()),
     (2, 3, 5)),
    ("softmax", lambda: nn.Softmax(dim=1), (2, 5, 3)),
    ("log_softmax", lambda: nn.LogSoftmax(dim=-1), (2, 5, 3)),
    ("conv_same_even_kernel", lambda: nn.Conv2d(3, 4, 4, padding="same", dilation=2), (2, 3, 9, 8)),
    ("conv_groups_stride", lambda: nn.Conv2d(4, 6, 3, stride=2, padding=(1, 2), groups=2), (2, 4, 9, 8)),
    ("conv_reflect", lambda: nn.Conv2d(2, 3, 3, padding=2, padding_mode="reflect"), (1, 2, 6, 7)),
    ("conv_replicate", lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), (1, 2, 6, 7)),
    ("conv_circular", lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (1, 2, 6, 7)),
    ("conv_transpose", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 5, 4)),
    ("conv_transpose_dilated", lambda: nn.ConvTranspose2d(3, 2, 2, stride=3, dilation=2, bias=False),
     (1, 3, 4, 5)),
    ("linear_3d", lambda: nn.Linear(5, 3), (2, 4, 5)),
    ("linear_nobias", lambda: nn.Linear(5, 3, bias=False), (4, 5)),
    ("batchnorm1d", lambda: _randomize_bn(nn.BatchNorm1d(5)), (4, 5)),
    ("batchnorm1d_3d", lambda: _randomize_bn(nn.BatchNorm1d(3)), (4, 3, 6)),
    ("batchnorm_no_affine", lambda: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    ("flatten_middle", lambda: nn.Flatten(1, 2), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[p[0] for p in LAYERS])
def test_layer_exports(name, make, shape):
    _check(make(), shape)


FUNCTIONS = [
    ("residual_add_mul_sub_div", lambda x: (x + 1.5) * x - x / 2.0, (2, 3, 4)),
    ("neg_exp_log_pow", lambda x: (-x).exp() + (x * x + 1).log() + x ** 2, (2, 3)),
    ("reductions", lambda x: x.sum(axis=1) + x.mean(axis=(1, 2)).reshape(2, 1, 1) * x.max(axis=-1, keepdims=True).sum(1),
     (2, 3, 4)),
    ("reduce_all", lambda x: x.mean() + x.sum() + x.max(), (2, 3)),
    ("transpose_matmul", lambda x: x.transpose(0, 2, 1) @ x, (2, 3, 4)),
    ("getitem", lambda x: x[:, 1:3, ::2, None] + x[0, -1, ::2][None, None, :, None], (2, 4, 6)),
    ("getitem_ellipsis_negative_step", lambda x: x[..., ::-1] * x[1][None, 0:1, ::-2].mean(), (2, 3, 4)),
    ("cat_stack", lambda x: F.cat([F.stack([x, x * 2], 1).reshape(2, -1), x.reshape(2, -1)], 1), (2, 3)),
    ("pad_constant_and_crop", lambda x: F.pad(F.pad(x, (1, 2, 0, 1), value=0.5), (-1, 0, -1, -2)),
     (1, 2, 4, 5)),
    ("interpolate_nearest", lambda x: F.interpolate(x, scale_factor=2), (1, 2, 3, 4)),
    ("interpolate_nearest_size", lambda x: F.interpolate(x, size=(5, 7)), (1, 2, 3, 4)),
    ("interpolate_bilinear", lambda x: F.interpolate(x, size=(7, 5), mode="bilinear"), (1, 2, 3, 4)),
    ("interpolate_bilinear_corners",
     lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=True), (1, 2, 4, 4)),
    ("relu6_gelu_silu", lambda x: F.relu6(x * 4) + F.gelu(x) + F.gelu(x, approximate="tanh") + F.silu(x),
     (2, 3, 4)),
    ("cast", lambda x: x.astype(np.float64).astype(np.float32) * 2, (2, 3)),
    ("unbatched_conv", lambda x: F.conv2d(x[0], np.ones((2, 3, 3, 3), np.float32), padding=1), (1, 3, 5, 5)),
]


@pytest.mark.parametrize("name,fn,shape", FUNCTIONS, ids=[p[0] for p in FUNCTIONS])
def test_ops_inside_forward(name, fn, shape):
    _check(Lambda(fn), shape)


def test_gelu_native_at_opset_20():
    proto = _check(Lambda(lambda x: F.gelu(x) + F.gelu(x, approximate="tanh")), (2, 3), opset=20)
    assert [n.op_type for n in proto.graph.node].count("Gelu") == 2
    proto17 = export(Lambda(F.gelu), None, (2, 3), opset=17)
    assert "Gelu" not in {n.op_type for n in proto17.graph.node}


def test_reductions_at_opset_18_take_axes_as_input():
    proto = _check(Lambda(lambda x: x.mean(axis=1) + x.max(axis=1)), (2, 3, 4), opset=18)
    for node in proto.graph.node:
        if node.op_type in ("ReduceMean", "ReduceMax"):
            assert len(node.input) == 2 and not node.attribute[1:]


def test_multiple_outputs():
    class Two(nn.Module):
        def forward(self, x):
            return F.relu(x), x * 3

    proto = _check(Two(), (2, 3))
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1"]


# ----- errors ----------------------------------------------------------------------------------
def test_bad_opset_and_shape():
    model = nn.ReLU()
    with pytest.raises(ValueError, match="opset must be an int in \\[13"):
        export(model, None, (1, 3), opset=12)
    with pytest.raises(ValueError, match="input_shape"):
        export(model, None, (1, 0))


def test_training_dropout_names_op_and_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = Lambda(lambda x: F.dropout(x, 0.5, training=True))

        def forward(self, x):
            return self.head(x)

    with pytest.raises(NotImplementedError, match=r"_Dropout \(in 'head'\)"):
        export(Net(), None, (2, 3))


def test_unsupported_op_names_it():
    with pytest.raises(NotImplementedError, match="Unfold.*has no ONNX mapping"):
        export(Lambda(lambda x: F.unfold(x, 2)), None, (1, 2, 4, 4))


def test_output_not_traced():
    class Escapes(nn.Module):
        def forward(self, x):
            return atrous.Tensor(np.asarray(x) * 2)  # leaves the traced ops

    with pytest.raises(ValueError, match="not computed by traced atrous ops"):
        export(Escapes(), None, (2, 3))


# ----- the CLI ---------------------------------------------------------------------------------
def test_cli_export_model_and_weights(tmp_path, capsys):
    from atrous.cli import main
    from atrous.io.safetensors_io import save_safetensors

    trained = _randomize_bn(models.digits_cnn())
    weights = tmp_path / "digits.safetensors"
    save_safetensors(trained.state_dict(), weights)
    out = tmp_path / "digits.onnx"
    assert main(["export", "--model", "digits_cnn", "--weights", str(weights), "--input", "1x8x8",
                 "--batch", "4", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [4, 1, 8, 8]
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    trained.eval()
    np.testing.assert_allclose(_session(proto).run(None, {"input": x})[0], trained(x).data,
                               rtol=1e-4, atol=1e-5)


def test_cli_export_from_run_folder(tmp_path):
    import json

    from atrous.cli import main
    from atrous.io.checkpoint import save
    from atrous.train import CHECKPOINT_NAME

    run = tmp_path / "run"
    run.mkdir()
    kwargs = {"activation": "relu", "pool": "max", "num_classes": 3}
    (run / "config.json").write_text(json.dumps({"model": "lenet5", "model_kwargs": kwargs}))
    trained = models.lenet5(**kwargs)
    save({"model": trained.state_dict(), "epoch": 1}, run / CHECKPOINT_NAME)
    out = tmp_path / "lenet.onnx"
    assert main(["export", "--checkpoint", str(run), "--opset", "18", str(out)]) == 0
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 18
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_session(proto).run(None, {"input": x})[0], trained(x).data,
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(SystemExit, match="checkpoint holds lenet5"):
        main(["export", "--checkpoint", str(run), "--model", "resnet18", str(out)])


def test_cli_export_errors(tmp_path):
    from atrous.cli import main

    with pytest.raises(SystemExit, match="--model NAME or --checkpoint"):
        main(["export", str(tmp_path / "x.onnx")])
    with pytest.raises(SystemExit, match="unknown model 'nope'"):
        main(["export", "--model", "nope", str(tmp_path / "x.onnx")])
    with pytest.raises(SystemExit, match="--input must"):
        main(["export", "--model", "lenet5", "--input", "1x32", str(tmp_path / "x.onnx")])
