"""digit_scenes: held-out digits stay held out, masks label strokes, seeds fix everything."""
import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn provides the digits data (pip install -e '.[dev]')")

from atrous.data import digits  # noqa: E402
from atrous.data.digit_scenes import BACKGROUND, CLASSES, digit_scenes, resize_bilinear  # noqa: E402

SMALL = dict(size=48, n_digits=(2, 4), n_scenes=40, digit_size=(10, 16))


@pytest.fixture(scope="module")
def scenes():
    return digit_scenes("train", **SMALL), digit_scenes("test", **SMALL)


def test_shapes_dtypes_and_classes(scenes):
    train, test = scenes
    for ds in (train, test):
        assert ds.images.shape == (40, 1, 48, 48) and ds.images.dtype == np.float32
        assert ds.masks.shape == (40, 48, 48) and ds.masks.dtype == np.int64
        assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
        assert set(np.unique(ds.masks)) <= set(range(11))
        assert len(ds) == 40 and len(ds.boxes) == 40
    assert CLASSES[BACKGROUND] == "background" and len(CLASSES) == 11


def test_train_and_test_scenes_never_share_a_digit(scenes):
    train, test = scenes
    train_src, test_src = set(train.sources.tolist()), set(test.sources.tolist())
    assert train_src <= set(digits("train").indices.tolist())
    assert test_src <= set(digits("test").indices.tolist())
    assert not train_src & test_src
    assert len(test_src) > 50  # many different held-out digits, not one repeated


def test_every_scene_is_rebuilt_from_its_boxes(scenes):
    """Independent reference: paste each listed digit (resized with PyTorch's rule, computed
    here by a plain loop) into an empty canvas, label pixels above 0.3, compare exactly."""
    from sklearn.datasets import load_digits

    raw = load_digits().images.astype(np.float32) / 16
    for ds in scenes:
        for i in range(0, len(ds), 7):
            canvas = np.zeros((48, 48), np.float32)
            mask = np.full((48, 48), BACKGROUND)
            for cls, top, left, side, src in ds.boxes[i]:
                assert load_digits().target[src] == cls
                digit = np.clip(_loop_bilinear(raw[src], side), 0, 1)
                canvas[top:top + side, left:left + side] = digit
                mask[top:top + side, left:left + side][digit > 0.3] = cls
            np.testing.assert_allclose(ds.images[i, 0], canvas, atol=1e-5)
            assert (ds.masks[i] == mask).mean() > 0.999  # a pixel exactly at 0.3 may round either way


def _loop_bilinear(img, n):
    """PyTorch's bilinear resize (align_corners=False) written out pixel by pixel."""
    h = img.shape[0]
    out = np.zeros((n, n), np.float64)
    for i in range(n):
        for j in range(n):
            y = max((i + 0.5) * h / n - 0.5, 0.0)
            x = max((j + 0.5) * h / n - 0.5, 0.0)
            y0, x0 = min(int(y), h - 1), min(int(x), h - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, h - 1)
            wy, wx = y - y0, x - x0
            out[i, j] = ((1 - wy) * (1 - wx) * img[y0, x0] + (1 - wy) * wx * img[y0, x1]
                         + wy * (1 - wx) * img[y1, x0] + wy * wx * img[y1, x1])
    return out


def test_boxes_do_not_overlap_and_fit_the_canvas(scenes):
    for ds in scenes:
        for b in ds.boxes:
            assert len(b) <= 4
            for k, (_, t, l, s, _) in enumerate(b):
                assert 10 <= s <= 16 and 0 <= t <= 48 - s and 0 <= l <= 48 - s
                for _, t2, l2, s2, _ in b[k + 1:]:
                    assert t + s <= t2 or t2 + s2 <= t or l + s <= l2 or l2 + s2 <= l


def test_mask_labels_stroke_pixels_with_the_digit_and_nothing_else(scenes):
    train, _ = scenes
    for i in range(len(train)):
        img, mask = train.images[i, 0], train.masks[i]
        assert (mask[img <= 0.3] == BACKGROUND).all()     # dark pixels are background
        assert (mask[img > 0.3] != BACKGROUND).all()      # bright pixels belong to a digit
        inside = np.zeros_like(mask, bool)
        for cls, t, l, s, _ in train.boxes[i]:
            inside[t:t + s, l:l + s] = True
            labels = set(np.unique(mask[t:t + s, l:l + s]).tolist()) - {BACKGROUND}
            assert labels == {cls}
        assert (mask[~inside] == BACKGROUND).all()


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = digit_scenes("test", size=32, n_digits=2, n_scenes=5, seed=7, digit_size=10)
    b = digit_scenes("test", size=32, n_digits=2, n_scenes=5, seed=7, digit_size=10)
    c = digit_scenes("test", size=32, n_digits=2, n_scenes=5, seed=8, digit_size=10)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)


def test_resize_matches_pytorch_bilinear(torch):
    rng = np.random.default_rng(0)
    for n_in, n_out in [(8, 12), (8, 19), (8, 8), (5, 3), (8, 31)]:
        img = rng.random((n_in, n_in)).astype(np.float32)
        ref = torch.nn.functional.interpolate(torch.from_numpy(img)[None, None], size=(n_out, n_out),
                                              mode="bilinear", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(resize_bilinear(img, n_out), ref, atol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split"):
        digit_scenes("val")
    with pytest.raises(ValueError, match="digit_size"):
        digit_scenes("test", size=16, digit_size=(12, 20))
    with pytest.raises(ValueError, match="n_digits"):
        digit_scenes("test", n_digits=(5, 2))

