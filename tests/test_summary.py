"""summary(): the seed's AlexNet numbers, torchvision's parameter counts, the usual MAC
counts, PyTorch's FLOP counter on random nets, bookkeeping rules, formats and the CLI."""
import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import models, nn
from atrous.analysis import summary
from atrous.cli import main


# ----- the seed's numbers and the zoo --------------------------------------------------------
def test_alexnet_conv1_local_connectivity_vs_sharing():
    s = summary(models.alexnet_original(), (3, 227, 227))
    r = s.rows[0]
    assert (r.name, r.type, r.output_shape) == ("features.0", "Conv2d", (96, 55, 55))
    assert r.params == 34_944 == 96 * (11 * 11 * 3 + 1)
    assert r.unshared_params == 105_705_600 == 55 * 55 * 96 * (11 * 11 * 3 + 1)
    assert r.sharing_ratio == 55 * 55
    assert r.macs == 55 * 55 * 96 * 11 * 11 * 3
    assert (r.rf_size, r.rf_jump, r.rf_start) == ((11, 11), (4, 4), (5, 5))
    assert s.totals.params == 62_378_344  # the dense 2012 AlexNet
    assert s.totals.output_shape == (1000,)


def test_resnet18_parameters_macs_and_receptive_field():
    s = summary(models.resnet18(), "3x224x224")
    assert s.totals.params == 11_689_512  # torchvision
    assert s.totals.trainable_params == 11_689_512 and s.totals.non_trainable_params == 0
    assert s.totals.macs == pytest.approx(1.82e9, rel=0.02)
    rows = {r.name: r for r in s.rows}
    assert rows["conv1"].macs == 112 * 112 * 64 * 3 * 7 * 7
    assert rows["fc"].macs == 512 * 1000
    # By hand: conv1 7 (jump 2), max pool +2*2 = 11 (jump 4), layer1 four 3x3 at jump 4:
    # 11 + 4*8 = 43; layer2 +8 then (jump 8) 3*16: 99; layer3 +16, 3*32: 211; layer4 +32,
    # 3*64: 435 at jump 32. Every layer pads symmetrically, so unit 0 is centred on pixel 0.
    last = rows["layer4.1.relu#2"]
    assert (last.rf_size, last.rf_jump, last.rf_start) == ((435, 435), (32, 32), (0, 0))
    assert rows["layer2.0.downsample.0"].rf_size == (43, 43)  # the shortcut sees less ...
    assert rows["layer2.0.relu#2"].rf_size == (67, 67)        # ... the sum sees the union


def test_resnet50_parameters_and_macs():
    model = models.resnet50()
    s = summary(model, (3, 224, 224))
    assert s.totals.params == 25_557_032  # torchvision
    assert s.totals.macs == pytest.approx(4.1e9, rel=0.02)
    assert {r.name: r for r in s.rows}["layer4.2.relu#3"].rf_size == (427, 427)


# ----- MACs against PyTorch's FLOP counter (2 FLOPs per multiply-accumulate) ------------------
@settings(max_examples=8)
@given(st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2),
       st.sampled_from([1, 2]), st.booleans())
def test_macs_match_torch_flop_counter(torch, k, stride, padding, dilation, groups, bias):
    from torch.utils.flop_counter import FlopCounterMode

    def build(lib):
        return lib.nn.Sequential(
            lib.nn.Conv2d(4, 6, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias),
            lib.nn.ReLU(), lib.nn.MaxPool2d(2, ceil_mode=True),
            lib.nn.ConvTranspose2d(6, 4, 3, stride=2, groups=groups, bias=bias),
            lib.nn.Conv2d(4, 8, 1), lib.nn.AdaptiveAvgPool2d(2), lib.nn.Flatten(), lib.nn.Linear(32, 5),
        )

    shape = (4, 13, 11)
    ours = summary(build(atrous), shape).totals.macs
    with FlopCounterMode(display=False) as counter:
        build(torch)(torch.zeros((1,) + shape))
    assert 2 * ours == counter.get_total_flops()


# ----- bookkeeping -----------------------------------------------------------------------------
class Twice(nn.Module):
    """One conv applied twice, a head tied to the conv's weight, and a frozen layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.tied = nn.Conv2d(4, 4, 3, padding=1)
        self.tied.weight = self.conv.weight
        self.frozen = nn.Conv2d(4, 2, 1, bias=False)
        self.frozen.weight.requires_grad_(False)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.frozen(self.tied(self.conv(self.conv(x))))


def test_shared_modules_tied_weights_and_frozen_parameters():
    s = summary(Twice(), (4, 6, 6))
    names = [r.name for r in s.rows]
    assert names == ["conv", "conv#2", "tied", "frozen"]
    params = [r.params for r in s.rows]
    assert params == [4 * 4 * 9 + 4, 0, 4, 8]  # the second call and the tied weight count 0
    assert s.rows[3].trainable_params == 0
    assert s.totals.params == 148 + 4 + 8 + 12  # every parameter once, the unused Linear too
    assert s.totals.non_trainable_params == 8
    assert s.rows[1].macs == s.rows[0].macs == 6 * 6 * 4 * 4 * 9  # every call costs
    # Without bias a locally connected layer has no "+ 1" either.
    assert s.rows[3].unshared_params == 6 * 6 * 2 * 4 and s.rows[3].sharing_ratio == 36
    assert "Trainable" in str(s).splitlines()[0]  # shown because some weights are frozen


def test_model_state_is_left_alone():
    model = models.digits_cnn()
    model.train()
    model.features[1].eval()  # a mixed state must come back as it was
    before = {k: v.copy() for k, v in model.state_dict().items()}
    summary(model, (1, 8, 8))
    assert model.training and not model.features[1].training and model.features[4].training
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert all(p.grad is None for p in model.parameters())


def test_dilated_context_module_rows_show_field_growth_at_constant_parameters():
    net = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)])
    s = summary(net, (8, 40, 40))
    assert [r.rf_size for r in s.rows] == [(3, 3), (7, 7), (15, 15), (31, 31)]
    assert len({r.params for r in s.rows}) == 1 and s.rows[0].params == 8 * 8 * 9 + 8
    assert len({r.macs for r in s.rows}) == 1  # same cost per layer too


def test_inception_block_union_and_macs():
    s = summary(models.inception_3a(), (192, 28, 28))
    assert s.totals.output_shape == (256, 28, 28)
    assert s.totals.receptive_field.size == (5, 5)  # the 5x5 branch bounds the union
    hw = 28 * 28
    expected = hw * (192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32)
    assert s.totals.macs == expected


def test_mlp_has_no_receptive_field():
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    s = summary(net, (20,))
    assert s.totals.macs == 20 * 30 + 30 * 4
    assert all(r.rf_size is None for r in s.rows) and s.totals.receptive_field is None
    assert "Receptive field" not in str(s)
    # A Linear layer maps the last axis: every leading position is one matrix-vector product.
    assert summary(nn.Linear(20, 30), (3, 5, 20)).totals.macs == 3 * 5 * 20 * 30


def test_approximations_are_flagged():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(3))  # 8 -> 3 bins: 3, 4, 3 wide
    s = summary(net, (1, 10, 10))
    assert not s.totals.receptive_field.exact and s.notes
    assert any("unequal" in n for n in s.notes)
    s = summary(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(4)), (1, 10, 10))
    assert s.totals.receptive_field.exact and not s.notes


def test_tuple_output_uses_the_first_tensor():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            y = self.conv(x)
            return y, F.relu(y)

    s = summary(Pair(), (1, 7, 7))
    assert s.totals.output_shape == (2, 5, 5)


def test_input_shape_forms_and_errors():
    net = nn.Conv2d(3, 4, 3)
    assert summary(net, "3x9x9").totals.input_shape == summary(net, [3, 9, 9]).totals.input_shape == (3, 9, 9)
    with pytest.raises(ValueError, match="summary: input_shape '3xbig' is not like '3x224x224'"):
        summary(net, "3xbig")
    with pytest.raises(ValueError, match="every size >= 1"):
        summary(net, (3, 0, 9))
    with pytest.raises(TypeError, match="input_shape must hold ints"):
        summary(net, (3, 9.5, 9))


# ----- formats -----------------------------------------------------------------------------------
def test_text_markdown_and_csv_carry_the_same_rows():
    s = summary(models.lenet5(), (1, 32, 32))
    text = str(s)
    assert text.splitlines()[0].split()[:3] == ["Layer", "Type", "Output"]
    assert "Parameters: 61,706" in text and repr(s) == text

    md = s.to_markdown().splitlines()
    table = [ln for ln in md if ln.startswith("|")]
    assert len(table) == 2 + len(s.rows) + 1  # header, rule, rows, total
    assert len({ln.count("|") for ln in table}) == 1
    assert table[2].startswith("| features.0 | Conv2d | 6x28x28 | 156 |")

    records = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert len(records) == len(s.rows) + 1 and records[-1]["name"] == "total"
    for rec, row in zip(records, s.rows):
        assert rec["name"] == row.name and int(rec["params"]) == row.params and int(rec["macs"]) == row.macs
        assert (int(rec["rf_size_h"]), int(rec["rf_size_w"])) == row.rf_size
    assert int(records[-1]["params"]) == 61_706 and int(records[-1]["macs"]) == s.totals.macs
    assert records[0]["unshared_params"] == str(28 * 28 * 6 * 26) and records[1]["unshared_params"] == ""


# ----- the command line --------------------------------------------------------------------------
def test_cli_summary_of_a_zoo_model(capsys):
    assert main(["summary", "alexnet_original", "--input", "3x227x227"]) == 0
    out = capsys.readouterr().out
    first = next(ln for ln in out.splitlines() if ln.startswith("features.0 "))
    assert "96x55x55" in first and "34,944" in first and "105,705,600" in first and "11x11" in first
    assert "Parameters: 62,378,344" in out


def test_cli_formats_and_default_input(capsys):
    assert main(["summary", "digits_cnn", "--csv"]) == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert records[0]["output_shape"] == "32x8x8" and records[-1]["name"] == "total"
    assert main(["summary", "lenet5", "--markdown", "--model-kwargs", '{"num_classes": 7}']) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Layer |") and "| **7** |" in out


def test_cli_summary_of_a_run_folder_loads_its_checkpoint(tmp_path, capsys):
    from atrous.io import save

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "digits_cnn", "model_kwargs": {"num_classes": 4},
                                                 "dataset": "digits"}))
    model = models.digits_cnn(num_classes=4)
    save({"model": model.state_dict(), "epoch": 1}, str(run / "checkpoint.npz"))
    assert main(["summary", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Input 1x8x8 -> output 4" in out
    assert main(["summary", str(run / "checkpoint.npz"), "--input", "1x8x8", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("total,,4,")
    # A checkpoint of another model does not fit: the weights really are loaded.
    save({"model": models.digits_cnn(num_classes=10).state_dict()}, str(run / "checkpoint.npz"))
    with pytest.raises(SystemExit, match="does not fit digits_cnn"):
        main(["summary", str(run)])


def test_cli_errors_are_plain_messages(tmp_path):
    with pytest.raises(SystemExit, match="unknown model 'nope'"):
        main(["summary", "nope"])
    with pytest.raises(SystemExit, match="config.json not found"):
        main(["summary", str(tmp_path)])
    with pytest.raises(SystemExit, match="is not like '3x224x224'"):
        main(["summary", "resnet18", "--input", "three"])
