"""``summary`` rows for ops applied as functions: models imported from ONNX (no layer modules)
and custom modules whose ``forward`` calls ``F.conv2d`` / ``F.linear`` / ``F.max_pool2d``.

Expected MACs are hand counts (Ho*Wo*O*C/groups*kh*kw per convolution, in*out per linear
map) or the summary of the original zoo model, whose layer rows are checked against
published figures in tests/test_summary.py.
"""
import numpy as np
import pytest

from atrous import autograd, models, nn
from atrous import functional as F
from atrous.analysis import receptive_field, summary

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")

import atrous.onnx  # noqa: E402  (needs onnx)


def _imported(model, shape):
    return atrous.onnx.load(atrous.onnx.export(model, None, (1,) + shape))


def _layer_rows(s):
    return [r for r in s.rows if r.macs or r.params]


# ----- ONNX-imported zoo models ------------------------------------------------------------------
def test_onnx_lenet5_rows_match_the_zoo_model():
    shape = (1, 32, 32)
    zoo, imp = summary(models.lenet5(), shape), summary(_imported(models.lenet5(), shape), shape)
    assert imp.totals.params == zoo.totals.params == 61_706
    hand = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert imp.totals.macs == zoo.totals.macs == hand
    assert sum(r.params for r in imp.rows) == 61_706
    # Layer for layer: same MACs, parameters, shapes and receptive fields, named after nodes.
    pairs = list(zip(_layer_rows(zoo), _layer_rows(imp)))
    assert len(pairs) == 5
    for z, i in pairs:
        assert (i.macs, i.params, i.output_shape, i.rf_size, i.rf_jump, i.rf_start) == \
            (z.macs, z.params, z.output_shape, z.rf_size, z.rf_jump, z.rf_start), (z.name, i.name)
        assert i.name.startswith(z.name + "/")  # the exporter's node name "features.0/Conv"
    assert [i.type for _, i in pairs] == ["conv2d", "conv2d", "linear", "linear", "linear"]
    types = [r.type for r in imp.rows]
    assert types.count("avg_pool2d") == 2 and types.count("tanh") == 4
    assert imp.totals.conv_params == zoo.totals.conv_params
    assert imp.totals.unshared_params == zoo.totals.unshared_params
    assert imp.totals.receptive_field == zoo.totals.receptive_field


def test_onnx_resnet18_totals_match_the_zoo_model():
    shape = (3, 64, 64)
    net = models.get_model("resnet18")
    zoo, imp = summary(net, shape), summary(_imported(net, shape), shape)
    assert imp.totals.params == zoo.totals.params == 11_689_512
    assert imp.totals.macs == zoo.totals.macs
    conv1 = 32 * 32 * 64 * 3 * 49  # hand count of the stem at 64x64: stride 2 -> 32x32
    assert imp.rows[0].macs == conv1 and imp.rows[0].name == "conv1/Conv" and imp.rows[0].type == "conv2d"
    assert sum(r.params for r in imp.rows) == 11_689_512  # every parameter on exactly one row
    assert len(imp.rows) == len(zoo.rows)  # conv, bn, relu, pools, fc: one row per layer call
    assert [r.type for r in imp.rows].count("batch_norm") == 20
    fc = imp.rows[-1]
    assert (fc.name, fc.type, fc.macs, fc.params) == ("fc/Gemm", "linear", 512 * 1000, 513_000)
    rf = imp.totals.receptive_field
    assert rf == zoo.totals.receptive_field and rf.exact  # global average pooling is exact


def test_onnx_graph_with_plain_names_unnamed_nodes_and_uneven_pool_padding():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (3, 2, 3, 3)), ("B", (3,)), ("Wfc", (4, 48)), ("C", (4,)))]
    nodes = [
        helper.make_node("Conv", ["X", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        # pads (0, 0, 1, 1): the bottom/right pad only, so the importer sums windows by a conv
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "Wfc", "C"], ["Y"], transB=1),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 8, 8])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = atrous.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert next(iter(model.children()), None) is None  # no dotted names: the root is a leaf
    s = summary(model, (2, 8, 8))
    got = [(r.name, r.type, r.output_shape, r.params, r.macs) for r in s.rows]
    assert got == [
        ("Conv_0", "conv2d", (3, 8, 8), 54 + 3, 8 * 8 * 3 * 2 * 9),
        ("Relu_1", "relu", (3, 8, 8), 0, 0),
        ("AveragePool_2", "avg_pool2d", (3, 4, 4), 0, 0),  # 8 + 1 padded -> 4 windows; no MACs
        ("Gemm_4", "linear", (4,), 192 + 4, 48 * 4),
    ]
    assert s.rows[0].unshared_params == 8 * 8 * 3 * (2 * 9 + 1)
    assert s.rows[2].rf_size == (4, 4) and s.rows[2].rf_jump == (2, 2)  # 3x3 conv, then 2x2 / 2


# ----- custom modules that call functional ops -----------------------------------------------------
class Functional(nn.Module):
    """Holds its weights directly (a leaf module) and runs every layer as a function."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(1)
        self.w1 = nn.Parameter(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
        self.b1 = nn.Parameter(np.zeros(4, np.float32))
        self.dw = nn.Parameter(rng.standard_normal((4, 1, 3, 3)).astype(np.float32))
        self.up = nn.Parameter(rng.standard_normal((4, 2, 2, 2)).astype(np.float32))
        self.fc = nn.Parameter(rng.standard_normal((5, 2 * 6 * 6)).astype(np.float32))
        self.fc.requires_grad_(False)
        self.proj = nn.Parameter(rng.standard_normal((5, 7)).astype(np.float32))

    def forward(self, x):
        y = F.relu(F.conv2d(x, self.w1, self.b1, padding=1))      # 4 x 12 x 12
        y = F.conv2d(y, self.dw, stride=2, padding=1, groups=4)   # depthwise, 4 x 6 x 6
        y = F.conv2d(y, self.dw, padding=1, groups=4)             # the same weight again
        y = F.max_pool2d(y, 2)                                    # 4 x 3 x 3
        y = F.conv_transpose2d(y, self.up, stride=2)              # 2 x 6 x 6
        y = F.linear(y.reshape((y.shape[0], -1)), self.fc)        # 5
        return y @ self.proj                                      # 7


def test_functional_module_rows_and_hand_counted_macs():
    s = summary(Functional(), (3, 12, 12))
    got = [(r.name, r.type, r.output_shape, r.params) for r in s.rows]
    assert got == [
        ("w1", "conv2d", (4, 12, 12), 108 + 4),
        ("relu", "relu", (4, 12, 12), 0),
        ("dw", "conv2d", (4, 6, 6), 36),
        ("dw#2", "conv2d", (4, 6, 6), 0),  # a weight used twice counts once
        ("max_pool2d", "max_pool2d", (4, 3, 3), 0),
        ("up", "conv_transpose2d", (2, 6, 6), 32),
        ("fc", "linear", (5,), 360),
        ("proj", "matmul", (7,), 35),
    ]
    macs = [r.macs for r in s.rows]
    assert macs == [12 * 12 * 4 * 3 * 9, 0, 6 * 6 * 4 * 1 * 9, 6 * 6 * 4 * 1 * 9, 0,
                    3 * 3 * 4 * 2 * 2 * 2, 72 * 5, 5 * 7]
    assert s.totals.macs == sum(macs) and s.totals.params == sum(r.params for r in s.rows) == 575
    assert s.totals.non_trainable_params == 360 and s.rows[6].trainable_params == 0
    # Receptive fields by hand: 3x3 -> 3; 3x3 stride 2 pad 1 -> 5, jump 2, start 0;
    # 3x3 pad 1 -> 9; 2x2 pool stride 2 -> 11, jump 4, start 1.
    fields = [(r.rf_size, r.rf_jump, r.rf_start) for r in s.rows[:5]]
    assert fields == [((3, 3), (1, 1), (0, 0))] * 2 + [((5, 5), (2, 2), (0, 0)), ((9, 9), (2, 2), (0, 0)),
                                                        ((11, 11), (4, 4), (1, 1))]
    # Locally connected counts: per output position a filter (+ bias where there is one);
    # the shared depthwise weight's filters count once in the shared total.
    assert s.rows[0].unshared_params == 12 * 12 * 4 * (27 + 1)
    assert s.rows[2].unshared_params == s.rows[3].unshared_params == 6 * 6 * 4 * 9
    assert s.totals.conv_params == 4 * 28 + 4 * 9


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.inner = Scale()

    def forward(self, x):
        return F.max_pool2d(F.relu(self.inner(self.conv(x))), 2)


class Scale(nn.Module):
    """A leaf of a user's class: a functional 1x1 convolution and an unused parameter."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.ones((4, 4, 1, 1), np.float32))
        self.spare = nn.Parameter(np.ones(3, np.float32))

    def forward(self, x):
        return F.conv2d(x, self.weight)


def test_layers_keep_their_rows_and_user_leaves_become_op_rows():
    s = summary(Block(), (2, 6, 6))
    got = [(r.name, r.type, r.params, r.macs) for r in s.rows]
    assert got == [
        ("conv", "Conv2d", 2 * 4 * 9 + 4, 6 * 6 * 4 * 2 * 9),  # its own conv2d gives no second row
        ("inner", "conv2d", 16, 6 * 6 * 4 * 4),                # inner.weight -> "inner"
        ("relu", "relu", 0, 0),
        ("max_pool2d", "max_pool2d", 0, 0),
    ]
    assert s.totals.params == 76 + 16 + 3  # the unused parameter is in the totals only
    # A model of atrous layers alone has exactly the rows it had.
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert [r.name for r in summary(net, (1, 6, 6)).rows] == ["0", "1", "2", "3", "4"]
    assert [r.type for r in summary(nn.Conv2d(1, 2, 3), (1, 5, 5)).rows] == ["Conv2d"]


def test_observers_are_removed_even_when_forward_fails():
    class Broken(nn.Module):
        def forward(self, x):
            F.relu(x)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        summary(Broken(), (1, 4, 4))
    assert autograd._observers == []
    summary(Functional(), (3, 12, 12))
    assert autograd._observers == []
    # receptive_field needs no op rows and sees the same field as the summary's total.
    net = Functional()
    assert receptive_field(net, (3, 12, 12)) == summary(net, (3, 12, 12)).totals.receptive_field


def test_cli_summary_of_an_onnx_file(tmp_path, capsys):
    from atrous.cli import main

    path = str(tmp_path / "lenet.onnx")
    atrous.onnx.export(models.lenet5(), path, (1, 1, 32, 32))
    assert main(["summary", path]) == 0
    out = capsys.readouterr().out
    assert "features.0/Conv" in out and "classifier.5/Gemm" in out
    assert "MACs per example: 416,520" in out and "Parameters: 61,706" in out
