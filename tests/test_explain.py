"""``atrous explain conv``: the im2col/GEMM arithmetic it prints, checked against plain loops."""
import re

import numpy as np
import pytest

from atrous.cli import main
from atrous.explain import explain_conv, parse_hwc, row_labels


def loop_conv(x, w, stride, padding, dilation):
    """Direct convolution by nested loops over outputs, filters, channels and taps."""
    C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    OH = (H + 2 * padding - dilation * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * padding - dilation * (KW - 1) - 1) // stride + 1
    out = np.zeros((O, OH, OW), dtype=np.int64)
    for o in range(O):
        for i in range(OH):
            for j in range(OW):
                for c in range(C):
                    for kh in range(KH):
                        for kw in range(KW):
                            out[o, i, j] += w[o, c, kh, kw] * xp[c, i * stride + kh * dilation, j * stride + kw * dilation]
    return out


@pytest.mark.parametrize(
    "shape, k, s, p, d, f",
    [((4, 4, 3), 3, 1, 0, 1, 2), ((5, 5, 2), 3, 2, 1, 1, 3), ((6, 5, 1), 2, 1, 1, 1, 1),
     ((7, 7, 2), 3, 1, 0, 2, 2), ((5, 6, 3), 1, 2, 0, 1, 4)],
)
def test_product_equals_loop_convolution(shape, k, s, p, d, f):
    ex = explain_conv(shape, kernel_size=k, stride=s, padding=p, dilation=d, filters=f, seed=3)
    H, W, C = shape
    assert ex.x.shape == (C, H, W) and ex.weight.shape == (f, C, k, k)
    expected = loop_conv(ex.x, ex.weight, s, p, d)
    np.testing.assert_array_equal(ex.output, expected)
    np.testing.assert_array_equal(ex.reference, expected)  # conv2d agrees exactly on integers
    assert ex.matches_conv2d
    # Column j holds window (j // OW, j % OW); row c*K*K + kh*K + kw holds channel c, tap (kh, kw).
    xp = np.pad(ex.x, ((0, 0), (p, p), (p, p)))
    OW = expected.shape[2]
    for r in range(C * k * k):
        c, tap = divmod(r, k * k)
        kh, kw = divmod(tap, k)
        for jcol in range(ex.columns.shape[1]):
            i, j = divmod(jcol, OW)
            assert ex.columns[r, jcol] == xp[c, i * s + kh * d, j * s + kw * d]
    np.testing.assert_array_equal(ex.weight_matrix[1 % f], ex.weight[1 % f].ravel())


def test_row_labels_are_channel_major():
    labels = row_labels(2, 2)
    assert labels == ["c0.k(0,0)", "c0.k(0,1)", "c0.k(1,0)", "c0.k(1,1)",
                      "c1.k(0,0)", "c1.k(0,1)", "c1.k(1,0)", "c1.k(1,1)"]


def test_parse_hwc():
    assert parse_hwc("4x4x3") == (4, 4, 3)
    assert parse_hwc("5x6") == (5, 6, 1)
    for bad in ("4x4x", "0x4x3", "a", "1x2x3x4"):
        with pytest.raises(ValueError, match="HxWxC"):
            parse_hwc(bad)


def test_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"5x5 window.*3x3 input"):
        explain_conv((3, 3, 1), kernel_size=3, dilation=2)
    with pytest.raises(ValueError, match="filters=0"):
        explain_conv((4, 4, 1), kernel_size=3, filters=0)


def _section(text, title):
    """Lines after the line starting with ``title`` up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].strip())
    return lines[start + 1 : end]


def test_cli_prints_matrices_whose_product_is_the_convolution(capsys):
    rc = main(["explain", "conv", "--input", "4x4x3", "--kernel", "3", "--stride", "1", "--filters", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    # Parse the printed im2col matrix and weight matrix back, multiply, and compare with the
    # printed product, the printed maps and a loop convolution of the printed input.
    im2col = _section(out, "im2col matrix X_col (27 x 4)")
    assert [line.split()[0] for line in im2col[1:]] == row_labels(3, 3)
    X = np.array([[int(v) for v in line.split()[1:]] for line in im2col[1:]])
    weights = _section(out, "weight matrix W_row (2 x 27)")
    Wm = np.array([[int(v) for v in re.findall(r"-?\d+", line.split(":", 1)[1])] for line in weights])
    assert X.shape == (27, 4) and Wm.shape == (2, 27)
    product = _section(out, "product W_row @ X_col")
    P = np.array([[int(v) for v in line.split(":", 1)[1].split()] for line in product[1:3]])
    np.testing.assert_array_equal(P, Wm @ X)
    channels = _section(out, "input channels")
    x = np.array([[int(v) for v in line.split()] for line in channels[1:]])  # (4, 12): c0 c1 c2
    x = x.reshape(4, 3, 4).transpose(1, 0, 2)
    w = Wm.reshape(2, 3, 3, 3)
    maps = _section(out, "reshaped to the output maps")
    M = np.array([[int(v) for v in line.split()] for line in maps[1:]]).reshape(2, 2, 2).transpose(1, 0, 2)
    expected = loop_conv(x, w, 1, 0, 1)
    np.testing.assert_array_equal(M, expected)
    np.testing.assert_array_equal(P.reshape(2, 2, 2), expected)
    assert "conv2d gives the same maps: equal" in out


def test_cli_padding_stride_and_png(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    png = tmp_path / "im2col.png"
    rc = main(["explain", "conv", "--input", "5x5x2", "--kernel", "3", "--stride", "2",
               "--padding", "1", "--png", str(png)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "zero-padded by 1" in out and "im2col matrix X_col (18 x 9)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in out


def test_cli_bad_input_exits_with_message():
    with pytest.raises(SystemExit, match="HxWxC"):
        main(["explain", "conv", "--input", "4by4"])
    with pytest.raises(SystemExit, match="does not fit"):
        main(["explain", "conv", "--input", "2x2x1", "--kernel", "3"])
