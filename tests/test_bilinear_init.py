"""``init.bilinear_``: ConvTranspose2d initialised to bilinear upsampling.

Oracles: a plain-loop bilinear interpolation (align_corners=False, edge clamped) written here,
PyTorch's ``F.interpolate`` and ``F.conv_transpose2d`` with the same weight, and FCN's
``upsample_filt`` values worked out by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrous
from atrous import nn
from atrous.nn import init


def loop_bilinear(x, s):
    """Upsample (N, C, H, W) by integer s: source coordinate (o + 0.5)/s - 0.5, clamped."""
    N, C, H, W = x.shape
    out = np.zeros((N, C, H * s, W * s))
    for i in range(H * s):
        for j in range(W * s):
            y = max((i + 0.5) / s - 0.5, 0.0)
            z = max((j + 0.5) / s - 0.5, 0.0)
            y0, z0 = min(int(y), H - 1), min(int(z), W - 1)
            y1, z1 = min(y0 + 1, H - 1), min(z0 + 1, W - 1)
            a, b = y - y0, z - z0
            out[:, :, i, j] = ((1 - a) * (1 - b) * x[:, :, y0, z0] + (1 - a) * b * x[:, :, y0, z1]
                               + a * (1 - b) * x[:, :, y1, z0] + a * b * x[:, :, y1, z1])
    return out


def test_fcn_upsample_filt_values():
    # size 4 (factor 2, centre 1.5): 1 - |j - 1.5|/2 = 1/4, 3/4, 3/4, 1/4.
    # size 3 (factor 2, centre 1): 1/2, 1, 1/2.
    w = init.bilinear_(np.empty((2, 2, 4, 3)))
    np.testing.assert_allclose(w[1, 1], np.outer([0.25, 0.75, 0.75, 0.25], [0.5, 1, 0.5]))
    assert not np.any(w[0, 1]) and not np.any(w[1, 0])
    depthwise = init.bilinear_(np.empty((3, 1, 4, 4), np.float32))
    assert depthwise.dtype == np.float32
    np.testing.assert_allclose(depthwise[2, 0].sum(), 4.0)  # s^2 copies of each input pixel


@given(s=st.sampled_from([2, 4, 8]), n=st.integers(1, 3), c=st.integers(1, 3),
       h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 1000))
def test_conv_transpose_reproduces_bilinear_interior(s, n, c, h, w, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    up = nn.ConvTranspose2d(c, c, 2 * s, stride=s, padding=s // 2, bias=False, dtype=np.float64)
    init.bilinear_(up.weight)
    got = np.asarray(up(x))
    want = loop_bilinear(x, s)
    assert got.shape == want.shape == (n, c, h * s, w * s)
    m = s // 2  # the outer s//2 rows and columns see the zero padding
    np.testing.assert_allclose(got[..., m:h * s - m, m:w * s - m], want[..., m:h * s - m, m:w * s - m],
                               atol=1e-12)
    # and atrous's own interpolate agrees
    ref = np.asarray(atrous.functional.interpolate(x, scale_factor=s, mode="bilinear",
                                                   align_corners=False))
    np.testing.assert_allclose(ref, want, atol=1e-12)


def test_border_differs_where_documented():
    x = np.ones((1, 1, 4, 4))
    up = nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False, dtype=np.float64)
    init.bilinear_(up.weight)
    y = np.asarray(up(x))
    assert np.all(y[0, 0, 1:-1, 1:-1] == 1.0)
    assert y[0, 0, 0, 3] == 0.75  # the edge row misses its outer neighbour's share


@pytest.mark.parametrize("s", [2, 3, 4, 8])
def test_matches_torch_interpolate_and_conv_transpose(torch, s):
    F = torch.nn.functional
    k = 2 * s - s % 2  # an odd factor takes the odd kernel 2s - 1 (same centre arithmetic)
    x = np.random.default_rng(s).standard_normal((2, 3, 5, 7)).astype(np.float32)
    w = init.bilinear_(np.empty((3, 3, k, k), np.float32))
    got = np.asarray(atrous.functional.conv_transpose2d(x, w, stride=s, padding=s // 2))
    tx = torch.from_numpy(x)
    via_torch = F.conv_transpose2d(tx, torch.from_numpy(w), stride=s, padding=s // 2).numpy()
    want = F.interpolate(tx, scale_factor=s, mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(got, via_torch, atol=1e-5)
    m = s // 2
    np.testing.assert_allclose(got[..., m:-m, m:-m], want[..., m:-m, m:-m], atol=1e-5)


def test_rejects_weights_that_cannot_map_channel_to_itself():
    with pytest.raises(ValueError, match=r"bilinear_: .*in_channels == out_channels/groups.*\(3, 2, 4, 4\)"):
        init.bilinear_(np.empty((3, 2, 4, 4)))
    with pytest.raises(ValueError, match="4-D"):
        init.bilinear_(np.empty((3, 3, 4)))
    t = atrous.Tensor(np.zeros((2, 2, 4, 4), np.float32))
    assert init.bilinear_(t) is t and t.data[0, 0, 1, 1] == 0.5625
