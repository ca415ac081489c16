"""Dense scan detection: canvases, the background-class training set, scanning, peaks, scoring.

References are independent: crops classified one by one in a loop, scikit-learn's own
digits for the planted pixels, hand-made score maps and matches.
"""
import numpy as np
import pytest

from atrous import detection as D
from atrous import manual_seed

sklearn = pytest.importorskip("sklearn", reason="scikit-learn provides the digits data (pip install -e '.[dev]')")


def _sklearn_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target


# ----- canvases --------------------------------------------------------------------------------
def test_canvases_are_deterministic_per_seed_and_differ_between_seeds():
    a, b = D.test_canvases(3, seed=5), D.test_canvases(3, seed=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.tops, y.tops)
        np.testing.assert_array_equal(x.sources, y.sources)
    c = D.test_canvases(1, seed=6)[0]
    np.testing.assert_array_equal(a[1].image, c.image)  # canvas k of a run has seed seed + k
    assert not np.array_equal(a[0].image, c.image) and not np.array_equal(a[2].image, c.image)


def test_canvases_hold_only_test_digits_exactly_where_recorded():
    from atrous.data import digits

    pixels, target = _sklearn_digits()
    test_ids = set(digits("test").indices.tolist())
    train_ids = set(digits("train").indices.tolist())
    for canvas in D.test_canvases(6, seed=11):
        assert 4 <= len(canvas) <= 6 and canvas.image.shape == (64, 64)
        assert set(canvas.sources.tolist()) <= test_ids
        assert not set(canvas.sources.tolist()) & train_ids
        cover = np.zeros((64, 64), int)
        for src, t, l, lab in zip(canvas.sources, canvas.tops, canvas.lefts, canvas.labels):
            np.testing.assert_allclose(canvas.image[t:t + 8, l:l + 8], pixels[src], atol=1e-6)
            assert lab == target[src]
            cover[t:t + 8, l:l + 8] += 1
        assert cover.max() == 1                       # no two digits overlap
        assert not canvas.image[cover == 0].any()     # nothing else on the canvas


def test_compose_canvas_errors():
    with pytest.raises(ValueError, match="compose_canvas: could not place"):
        D.compose_canvas(np.ones((30, 1, 8, 8)), np.zeros(30, int), size=16, count=5)
    with pytest.raises(ValueError, match=r"compose_canvas: images must be \(N, 1, 8, 8\)"):
        D.compose_canvas(np.ones((3, 1, 7, 7)), np.zeros(3, int))


# ----- the background class --------------------------------------------------------------------
def test_training_windows_follow_the_offset_rule():
    # Image i is a flat 8x8 block of value (i + 1) / 41, class i % 10: a window's pixels say
    # exactly which digits it overlaps and by how much.
    n = 40
    images = (np.arange(1, n + 1, dtype=np.float32) / (n + 1))[:, None, None, None] * np.ones((n, 1, 8, 8), np.float32)
    labels = np.arange(n) % 10
    x, y = D.scanner_training_set(images, labels, seed=3, canvases=20, noise_fraction=0.0)
    assert x.shape[1:] == (1, 8, 8) and x.dtype == np.float32 and len(x) == len(y)
    for window, label in zip(x[:, 0], y):
        values, counts = np.unique(np.round(window * (n + 1)).astype(int), return_counts=True)
        counts = dict(zip(values.tolist(), counts.tolist()))
        counts.pop(0, None)
        best = max(counts, key=counts.get) if counts else None
        if label != D.BACKGROUND:
            # offset <= 1 along each axis: at least 7x7 pixels of that one digit
            assert counts[best] >= 49 and (best - 1) % 10 == label
        else:
            # offset >= 3 along some axis from every digit: at most 5x8 pixels of any one
            assert not counts or max(counts.values()) <= 40
    assert (y == D.BACKGROUND).sum() >= (y != D.BACKGROUND).sum()


def test_training_set_is_deterministic_and_has_noise_patches():
    images, labels = np.random.default_rng(0).random((30, 1, 8, 8), np.float32), np.arange(30) % 10
    a = D.scanner_training_set(images, labels, seed=1, canvases=10)
    b = D.scanner_training_set(images, labels, seed=1, canvases=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].min() >= 0 and a[0].max() <= 1


# ----- scanning equals the classifier on every crop ------------------------------------------
def _random_scanner(seed):
    manual_seed(seed)
    model = D.digits_scanner()
    rng = np.random.default_rng(seed)
    for m in model.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if hasattr(m, "running_mean") and m.running_mean is not None:
            m.running_mean.data[...] = rng.normal(0, 0.5, m.running_mean.shape)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    return model.eval()


@pytest.mark.parametrize("shape", [(8, 8), (21, 19), (9, 30)])
def test_dense_scan_scores_equal_the_classifier_on_each_window(shape):
    model = _random_scanner(1)
    image = np.random.default_rng(2).random(shape, dtype=np.float32)
    result = D.scan(model, image)
    H, W = shape
    assert result.logits.shape == (11, H - 7, W - 7) and result.stride == 1 and result.passes == min(4, (H - 7) * (W - 7))
    for i in range(H - 7):
        for j in range(W - 7):
            crop = image[i:i + 8, j:j + 8][None, None]
            want = np.asarray(model(crop).data)[0]
            np.testing.assert_allclose(result.logits[:, i, j], want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"window at ({i}, {j})")
    sparse = D.scan(model, image, dense=False)
    assert sparse.stride == 2
    np.testing.assert_allclose(sparse.logits, result.logits[:, ::2, ::2], rtol=1e-5, atol=1e-6)


def test_scan_errors():
    model = _random_scanner(0)
    with pytest.raises(ValueError, match="scan: the image"):
        D.scan(model, np.zeros((7, 20), np.float32))
    with pytest.raises(ValueError, match="scan: image must be"):
        D.scan(model, np.zeros((2, 1, 9, 9), np.float32))


# ----- peaks and matching ----------------------------------------------------------------------
def _result_with_peaks(peaks, shape=(30, 30)):
    """Logits: background 0 everywhere; each (row, col, class, height) adds a bump to that class."""
    logits = np.full((11,) + shape, -5.0, np.float32)
    logits[D.BACKGROUND] = 0.0
    ii, jj = np.mgrid[0:shape[0], 0:shape[1]]
    for r, c, k, h in peaks:
        bump = h - 2.0 * np.maximum(abs(ii - r), abs(jj - c))
        logits[k] = np.maximum(logits[k], bump)
    return D.ScanResult(logits, 1, (8, 8), D.BACKGROUND)


def test_find_detections_keeps_the_strongest_peak_per_object():
    # Peaks of height 8 at (5, 7) class 3 and 6 at (20, 20) class 8; a weaker class-5 peak 3 px
    # from the first is the same object; a peak of height -1 is below the 0.5 threshold.
    result = _result_with_peaks([(5, 7, 3, 8.0), (5, 10, 5, 7.5), (20, 20, 8, 6.0), (12, 25, 1, -1.0)])
    dets = D.find_detections(result, threshold=0.5, radius=4, smooth=0)
    assert [(d.label, d.row, d.col) for d in dets] == [(3, 5, 7), (8, 20, 20)]
    # At (5, 7): class 3 = 8, background = 0, class 5 = 7.5 - 2*3, the other 8 digits -5.
    assert dets[0].score == pytest.approx(np.exp(8) / (np.exp(8) + 1 + np.exp(1.5) + 8 * np.exp(-5)), rel=1e-4)
    # With a smaller suppression radius the class-5 peak is its own detection.
    dets = D.find_detections(result, threshold=0.5, radius=2, smooth=0)
    assert [(d.label, d.row, d.col) for d in dets] == [(3, 5, 7), (5, 5, 10), (8, 20, 20)]


def test_smoothing_puts_the_detection_on_the_plateau_centre_and_votes_the_class():
    # A 3x3 block of confident class-3 windows around (10, 10), as a trained scanner answers
    # around a digit, with one corner (9, 11) scoring a different class even higher.
    logits = np.full((11, 24, 24), -5.0, np.float32)
    logits[D.BACKGROUND] = 0.0
    logits[3, 9:12, 9:12] = 10.0
    logits[5, 9, 11] = 14.0
    result = D.ScanResult(logits, 1, (8, 8), D.BACKGROUND)
    raw = D.find_detections(result, smooth=0)
    assert [(d.label, d.row, d.col) for d in raw] == [(5, 9, 11)]
    smoothed = D.find_detections(result, smooth=1)
    assert [(d.label, d.row, d.col) for d in smoothed] == [(3, 10, 10)]
    p3 = np.exp(10) / (np.exp(10) + 1 + 9 * np.exp(-5))               # class 3 at 8 of the 9 windows
    p3_corner = np.exp(10) / (np.exp(14) + np.exp(10) + 1 + 8 * np.exp(-5))
    assert smoothed[0].score == pytest.approx((8 * p3 + p3_corner) / 9, rel=1e-6)
    # A single confident window is no plateau: its 3x3 average stays under the threshold.
    logits[5, 9, 11] = -5.0
    logits[3] = -5.0
    logits[7, 4, 4] = 20.0
    assert D.find_detections(D.ScanResult(logits, 1, (8, 8), D.BACKGROUND), smooth=1) == []


def test_match_detections_counts_by_place_and_class():
    canvas = D.Canvas(np.zeros((40, 40), np.float32), np.array([2, 20, 30]), np.array([3, 10, 30]),
                      np.array([7, 1, 4]), np.array([0, 1, 2]))
    det = [D.Detection(7, 4, 1, 0.9, 5.0),     # 2 px off along both axes: found
           D.Detection(7, 2, 3, 0.8, 4.0),     # same digit again: a false positive
           D.Detection(2, 20, 10, 0.9, 6.0),   # right place, wrong class
           D.Detection(4, 33, 30, 0.9, 7.0)]   # 3 px off: too far
    m = D.match_detections(det, canvas, tolerance=2)
    assert (m.true_positives, m.false_positives, m.missed, m.wrong_class) == (1, 3, 2, 1)
    assert m.pairs == [(0, 0)]


# ----- pictures in the wild ------------------------------------------------------------------
def test_prepare_image_inverts_and_rescales_to_8px_digits():
    canvas = D.test_canvases(1, seed=2, size=24, count=2)[0]
    assert canvas.image.max() == 1.0 and canvas.image.min() == 0.0
    paper = np.kron(1.0 - canvas.image, np.ones((3, 3)))          # dark ink on white, 24 px digits
    rgb = np.round(np.repeat(paper[..., None], 3, axis=2) * 255).astype(np.uint8)
    got = D.prepare_image(rgb, digit_height=24)
    assert got.shape == (24, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, canvas.image, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(D.prepare_image(canvas.image), canvas.image, atol=1e-6)  # already right


# ----- a trained scanner: detection quality and the command line --------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("scanner")
    model, trainer = D.train_scanner(out=str(run))  # the default budget: 6 epochs, ~5,600 windows
    return str(run), model, trainer


def test_scanner_finds_held_out_digits(trained_run):
    _, model, trainer = trained_run
    q = D.evaluate_canvases(model, D.test_canvases(5, seed=100))
    assert q.planted >= 20
    assert q.recall >= 0.9 and q.precision >= 0.9, q


def test_scan_command_on_a_canvas_and_on_a_png(trained_run, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the heatmap needs matplotlib")
    import matplotlib.image as mpimg

    from atrous.cli import main

    run, model, _ = trained_run
    out = tmp_path / "canvas.png"
    assert main(["scan", "--checkpoint", run, "--canvas", "--seed", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    canvas = D.test_canvases(1, seed=4)[0]
    assert f"of {len(canvas)} found at the right place" in text and "heatmap:" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same canvas as dark digits 16 px tall on white paper, read back from a PNG.
    page = tmp_path / "page.png"
    mpimg.imsave(page, np.kron(1 - canvas.image, np.ones((2, 2))), cmap="gray", vmin=0, vmax=1)
    out2 = tmp_path / "page_scan.png"
    assert main(["scan", "--checkpoint", run, "--image", str(page), "--digit-height", "16",
                 "--out", str(out2)]) == 0
    text = capsys.readouterr().out
    found = D.find_detections(D.scan(model, canvas.image))
    assert f"{len(found)} digit" in text and out2.exists()
    for d in found:
        assert f"{d.label:>5}  {d.row:>4}  {d.col:>4}" in text
