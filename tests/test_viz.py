"""Pictures of convolution: each drawing writes a real PNG of sensible size, atomically."""
import os
import struct
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")

import atrous  # noqa: E402
from atrous import nn  # noqa: E402
from atrous.viz import conv as vc  # noqa: E402


def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk; fails on anything else."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def check_png(path, min_side=150, max_side=4000):
    w, h = png_size(path)
    assert min_side <= w <= max_side and min_side <= h <= max_side, (w, h)
    img = __import__("matplotlib.image").image.imread(path)
    assert img.std() > 0.05  # something was drawn
    folder = os.path.dirname(path)
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]  # atomic: no leftovers
    return w, h


def small_net():
    atrous.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, dilation=2), nn.ReLU(),
                         nn.Conv2d(4, 5, 3, dilation=4))


def test_plot_im2col(tmp_path):
    x = np.arange(48).reshape(3, 4, 4) % 5
    path = str(tmp_path / "im2col.png")
    assert vc.plot_im2col(x, path, kernel_size=3) == path
    w, h = check_png(path)
    assert h > w  # 27 rows: a tall matrix
    path2 = vc.plot_im2col(x[:2, :, :].astype(np.float32) / 3, str(tmp_path / "pad.png"), kernel_size=2,
                           stride=2, padding=1)
    check_png(path2)


def test_plot_im2col_refuses_unreadable_sizes(tmp_path):
    with pytest.raises(ValueError, match="too large to draw"):
        vc.plot_im2col(np.zeros((3, 16, 16)), str(tmp_path / "big.png"), kernel_size=3)
    with pytest.raises(ValueError, match="does not fit"):
        vc.plot_im2col(np.zeros((1, 2, 2)), str(tmp_path / "small.png"), kernel_size=3)


def test_plot_filters_rgb_grey_and_many_channels(tmp_path):
    atrous.manual_seed(0)
    rgb = vc.plot_filters(nn.Conv2d(3, 12, 5), str(tmp_path / "rgb.png"))
    check_png(rgb)
    grey = vc.plot_filters(np.random.default_rng(0).standard_normal((10, 1, 3, 3)), str(tmp_path / "grey.png"))
    check_png(grey)
    multi = vc.plot_filters(small_net()[2].weight, str(tmp_path / "multi.png"))
    check_png(multi)
    with pytest.raises(ValueError, match="no Conv2d"):
        vc.plot_filters(nn.Sequential(nn.ReLU()), str(tmp_path / "none.png"))


def test_layer_output_is_that_layer_of_the_forward_pass():
    net = small_net()
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    name, maps = vc.layer_output(net, x, "2")
    expected = net[2](net[1](net[0](x))).numpy()
    assert name == "2"
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    assert net.training  # mode restored
    with pytest.raises(ValueError, match="no layer 'nope'"):
        vc.layer_output(net, x, "nope")


def test_plot_feature_maps_model_and_array(tmp_path):
    net = small_net()
    x = np.random.default_rng(1).standard_normal((3, 16, 16)).astype(np.float32)
    check_png(vc.plot_feature_maps(net, x, str(tmp_path / "model.png")))
    check_png(vc.plot_feature_maps(net, x, str(tmp_path / "layer.png"), layer="4"))
    check_png(vc.plot_feature_maps(net, x.astype(np.float64), str(tmp_path / "f64.png"), layer="2"))
    check_png(vc.plot_feature_maps(np.random.default_rng(0).random((1, 6, 5, 5)), None, str(tmp_path / "arr.png")))
    with pytest.raises(ValueError, match="input is needed"):
        vc.plot_feature_maps(net, None, str(tmp_path / "x.png"))


def test_gradient_receptive_field_of_dilated_stack():
    """3x3 convs at rates 1, 2, 4: 1 + 2*(1 + 2 + 4) = 15 pixels per side, from the formula."""
    net = small_net()
    image = np.random.default_rng(2).standard_normal((3, 32, 32))
    grad = vc.input_gradient_map(net, image, "4", (5, 7))
    rows, cols = np.nonzero(grad)
    # Output unit (i, j) of a stride-1, unpadded stack starts at input pixel (i, j).
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 5 + 14, 7, 7 + 14)
    assert net[0].weight.dtype == np.float32  # the caller's model is untouched


def test_plot_receptive_field_box_and_model(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32] / 31
    img = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx * yy)])
    check_png(vc.plot_receptive_field(img, (5, 2, 0), str(tmp_path / "box.png"), position=(3, 4)))
    check_png(vc.plot_receptive_field(img, {"size": (7, 7), "jump": 4, "start": -1},
                                      str(tmp_path / "edge.png")))
    check_png(vc.plot_receptive_field(img, small_net(), str(tmp_path / "net.png"), position=(4, 4), layer="4"))
    # The shapes of atrous.analysis results: attributes size/jump/start, or a summary row's rf_*.
    field = SimpleNamespace(size=(31, 31), jump=(1, 1), start=(0, 0))
    row = SimpleNamespace(rf_size=(11, 11), rf_jump=(4, 4), rf_start=(5, 5))
    assert vc._rf_triplet(field) == ((31, 1, 0), (31, 1, 0))
    assert vc._rf_triplet(row) == ((11, 4, 5), (11, 4, 5))
    check_png(vc.plot_receptive_field(img, row, str(tmp_path / "row.png"), position=(2, 3)))
    with pytest.raises(TypeError, match="size, jump, start"):
        vc.plot_receptive_field(img, 5, str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="outside layer"):
        vc.plot_receptive_field(img, small_net(), str(tmp_path / "bad.png"), position=(40, 0), layer="4")
