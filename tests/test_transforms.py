import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrous
from atrous.data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat


def batch(rng, n=5, c=3, h=6, w=7, dtype=np.float32):
    return rng.standard_normal((n, c, h, w)).astype(dtype)


# ----- plain per-image references --------------------------------------------------------------
def ref_pad(img, left, top, right, bottom, mode, fill):
    """Pad one (C, H, W) image pixel by pixel, torchvision's definitions of the modes."""
    C, H, W = img.shape
    out = np.empty((C, H + top + bottom, W + left + right), img.dtype)

    def src(k, n):  # source index of padded position k along an axis of length n
        if mode == "edge":
            return min(max(k, 0), n - 1)
        if mode == "reflect":  # mirror without repeating the edge pixel: -1 -> 1
            while k < 0 or k >= n:
                k = -k if k < 0 else 2 * (n - 1) - k
            return k
        if mode == "symmetric":  # mirror repeating the edge pixel: -1 -> 0
            while k < 0 or k >= n:
                k = -k - 1 if k < 0 else 2 * n - 1 - k
            return k
        return k if 0 <= k < n else None

    for r in range(out.shape[1]):
        for q in range(out.shape[2]):
            a, b = src(r - top, H), src(q - left, W)
            out[:, r, q] = fill if a is None or b is None else img[:, a, b]
    return out


def ref_random_crop(x, size, padding, mode, fill, rng):
    left, top, right, bottom = padding
    h, w = size
    padded = [ref_pad(img, left, top, right, bottom, mode, fill) for img in x]
    H, W = padded[0].shape[1:]
    i = rng.integers(0, H - h + 1, size=len(x))  # the documented draw order: rows, then columns
    j = rng.integers(0, W - w + 1, size=len(x))
    out = np.empty((len(x), x.shape[1], h, w), x.dtype)
    for n in range(len(x)):
        for r in range(h):
            for q in range(w):
                out[n, :, r, q] = padded[n][:, i[n] + r, j[n] + q]
    return out


# ----- Normalize / ToFloat ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_a_loop(rng, dtype):
    x = batch(rng, dtype=dtype)
    mean, std = [0.1, -0.2, 0.3], [0.5, 2.0, 0.25]
    out = Normalize(mean, std)(x)
    ref = np.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(3):
            ref[n, c] = (x[n, c] - dtype(mean[c])) / dtype(std[c])
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(Normalize([0.5], [2.0])(x), (x - dtype(0.5)) / dtype(2.0))


def test_normalize_errors(rng):
    with pytest.raises(ValueError, match="mean has 2 entries but x has 3 channels"):
        Normalize([0.0, 0.0], [1.0, 1.0])(batch(rng))
    with pytest.raises(ValueError, match="std must be non-zero"):
        Normalize([0.0], [0.0])
    with pytest.raises(ValueError, match="expected x to be 4-D"):
        Normalize([0.0], [1.0])(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        Normalize([0.0], [1.0])(np.zeros((1, 1, 4, 4), np.uint8))


def test_to_float_scales_uint8_and_keeps_floats():
    x = np.array([[[[0, 51, 255]]]], dtype=np.uint8)
    out = ToFloat()(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[[0.0, 0.2, 1.0]]]], rtol=1e-7)
    assert ToFloat(np.float64)(np.full((1,), 0.5, np.float32)).dtype == np.float64
    with pytest.raises(TypeError, match="int8"):
        ToFloat()(np.zeros(2, np.int8))


# ----- RandomCrop ------------------------------------------------------------------------------
@given(
    n=st.integers(1, 6),
    c=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_random_crop_matches_per_image_reference(n, c, h, w, pads, mode, seed, data):
    if mode == "reflect":  # reflection needs the pad smaller than the side (torchvision's rule)
        pads = [min(p, (w if k % 2 == 0 else h) - 1) for k, p in enumerate(pads)]
    left, top, right, bottom = pads
    th = data.draw(st.integers(1, h + top + bottom))
    tw = data.draw(st.integers(1, w + left + right))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    fill = 0.75
    t = RandomCrop((th, tw), padding=pads, padding_mode=mode, fill=fill)
    out = t(x, rng=np.random.default_rng(seed))
    ref = ref_random_crop(x, (th, tw), pads, mode, fill, np.random.default_rng(seed))
    assert out.shape == (n, c, th, tw) and out.dtype == x.dtype
    np.testing.assert_array_equal(out, ref)


def test_random_crop_padding_forms_and_per_image_offsets(rng):
    x = batch(rng, n=64, c=2, h=8, w=8)
    out = RandomCrop(8, padding=4)(x, rng=np.random.default_rng(1))
    ref = ref_random_crop(x, (8, 8), (4, 4, 4, 4), "constant", 0, np.random.default_rng(1))
    np.testing.assert_array_equal(out, ref)
    # each image gets its own offset: where image k's first pixel landed differs across the batch
    landed = {tuple(np.argwhere(o[0] == x[k, 0, 0, 0]).ravel()) for k, o in enumerate(out)}
    assert len(landed) > 10
    # (left/right, top/bottom) form
    out2 = RandomCrop((5, 6), padding=(1, 2))(x, rng=np.random.default_rng(2))
    ref2 = ref_random_crop(x, (5, 6), (1, 2, 1, 2), "constant", 0, np.random.default_rng(2))
    np.testing.assert_array_equal(out2, ref2)


def test_random_crop_generators_and_pad_if_needed(rng):
    x = batch(rng, n=4, h=5, w=5)
    a = RandomCrop(3, generator=123)(x)
    b = RandomCrop(3)(x, rng=np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    atrous.manual_seed(9)
    c = RandomCrop(3)(x)
    atrous.manual_seed(9)
    np.testing.assert_array_equal(c, RandomCrop(3)(x))
    # pad_if_needed pads both sides by the shortfall, as torchvision does
    out = RandomCrop((7, 6), pad_if_needed=True)(x, rng=np.random.default_rng(0))
    ref = ref_random_crop(x, (7, 6), (1, 2, 1, 2), "constant", 0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, ref)


def test_random_crop_errors(rng):
    with pytest.raises(ValueError, match=r"crop size \(9, 9\) is larger than the padded image \(8, 8\)"):
        RandomCrop(9, padding=1)(batch(rng, h=6, w=6))
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        RandomCrop(3, padding_mode="wrap")
    with pytest.raises(ValueError, match="sequence of 2 or 4"):
        RandomCrop(3, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="expected x to be 4-D"):
        RandomCrop(3)(np.zeros((3, 5, 5), np.float32))


# ----- RandomHorizontalFlip --------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_horizontal_flip_matches_a_loop(rng, p):
    x = batch(rng, n=40)
    out = RandomHorizontalFlip(p)(x, rng=np.random.default_rng(4))
    draws = np.random.default_rng(4).random(40)
    ref = np.empty_like(x)
    for n in range(40):
        for q in range(x.shape[3]):
            ref[n, :, :, q] = x[n, :, :, x.shape[3] - 1 - q] if draws[n] < p else x[n, :, :, q]
    np.testing.assert_array_equal(out, ref)
    flipped = sum(not np.array_equal(out[n], x[n]) for n in range(40))
    assert flipped == int((draws < p).sum())
    assert out is not x


def test_compose_passes_the_generator_along(rng):
    x = batch(rng, n=6)
    t = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip(), Normalize([0.0], [2.0]), lambda v: v + 1])
    out = t(x, rng=np.random.default_rng(8))
    g = np.random.default_rng(8)
    ref = RandomCrop(4, padding=1)(x, rng=g)
    ref = RandomHorizontalFlip()(ref, rng=g)
    ref = ref / np.float32(2.0) + 1
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert "RandomCrop" in repr(t)
