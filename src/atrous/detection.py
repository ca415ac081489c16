"""Finding digits on a larger image with an 8x8 classifier: dense sliding-window detection.

The pieces, in the order a scan uses them:

* **Canvases** (:func:`compose_canvas`): 8x8 digits pasted at random, non-overlapping places on
  a black canvas, with the planted classes and positions kept as the ground truth. Test
  canvases (:func:`test_canvases`) draw only from the held-out test split.
* **A background class.** A digits classifier has no "nothing here" output: slid over a canvas
  it names a digit at every position, empty ones included. :func:`scanner_training_set` adds
  an 11th class (index :data:`BACKGROUND`) learned from windows of *training* canvases, composed
  exactly as the test canvases but from the train split, labelled by their offset from the
  nearest planted digit (Chebyshev distance in pixels between top-left corners):

  - offset 0 or 1: that digit (a window one pixel off still shows the whole digit but one
    row or column, and may show a sliver of a neighbour: tolerating it makes a detection
    robust to where the digit sits inside its own 8x8 frame);
  - offset 2: not used (a "don't care" band between the classes, so the boundary the network
    must learn is not drawn through near-identical windows);
  - offset 3 to 7: background; these windows hold a partial digit cut 3+ pixels off, or
    fragments of two neighbouring digits: the hard negatives, which look most like digits
    (the right part of a 0 resembles a 1, the lower loop of an 8 a 0);
  - offset 8 or more: background, the empty canvas (a few suffice);
  - plus uniform-noise patches of random density and brightness labelled background, so that
    texture in a real image (``atrous scan --image``) is not read as a digit.

  Chosen on validation canvases made from a held-back fifth of the train split (never the
  test split): this scheme scored 0.99 precision and recall there, digit positives at
  offset 0 only (offset 1 unused, background from 2) 0.96.

* **The scanner** (:func:`digits_scanner`): a small digits CNN with 11 outputs and *unpadded*
  convolutions. Unpadded matters: with zero padding a trunk sees, near a window's border,
  zeros when the window is classified on its own but real neighbouring pixels on the canvas,
  so the dense scores would differ from the classifier that was trained on cut-out windows.
  Without padding the fully convolutional network's score at every position *is* the
  classifier applied to that window (the tests check it against a loop over crops).
* **Scanning** (:func:`scan`): ``atrous.surgery.fully_convolutional`` turns the classifier's
  Linear layers into convolutions, so one forward pass over the canvas scores every window
  at the trunk's total stride S (2 for the scanner: one 2x2 max pool; 4 for ``digits_cnn``).
  A digit is only 8 px wide, and a window S-1 px off its position sees a different
  picture, so the scan runs S*S passes on the canvas shifted by (a, b), 0 <= a, b < S, and
  interleaves them ("shift and stitch", as OverFeat and FCN do) into a stride-1 map: every
  pixel position is scored, each pass still one convolution over the whole image.
* **Peaks** (:func:`find_detections`): the evidence that *some* digit sits at a position is
  P(digit) = 1 - P(background). Trained to answer "digit" up to 1 px off, the scanner
  responds to a digit with a 3x3 plateau; averaging the evidence and each class's
  probability over 3x3 positions (the matched filter for that plateau) puts the peak on the
  plateau's centre, the digit's place, and lets the nine windows vote on the class
  (on validation canvases from a held-back part of the train split this removed about
  two thirds of the errors, all of which were the right place with the wrong class, the
  peak having landed on a 1-2 px offset window). Detections are local maxima of the
  averaged evidence above a threshold, greedily suppressed within ``radius`` px (two
  non-overlapping 8x8 digits have corners at least 8 px apart along some axis, so 4 px is
  the same object), each named by its best-voted class.
* **Scoring** (:func:`match_detections`, :func:`evaluate_canvases`): a detection is right when
  its class is the planted digit's and its corner is within ``tolerance`` px (per axis) of
  the planted corner; each planted digit is matched at most once, best score first.

Positions are (row, col) of a window's top-left corner in canvas pixels; its centre is
3.5 px further along each axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import nn
from .autograd import no_grad
from .tensor import Tensor

__all__ = [
    "WINDOW", "BACKGROUND", "CLASS_NAMES", "Canvas", "compose_canvas", "test_canvases",
    "scanner_training_set", "DigitsScanner", "digits_scanner", "train_scanner", "load_scanner",
    "ScanResult", "scan", "Detection", "find_detections", "Match", "match_detections",
    "Quality", "evaluate_canvases", "prepare_image", "SCANNER_CONFIG",
]

WINDOW = 8          # the digits are 8x8
BACKGROUND = 10     # index of the "no digit here" class
CLASS_NAMES = [str(d) for d in range(10)] + ["background"]


# ----- canvases ------------------------------------------------------------------------------
@dataclass
class Canvas:
    """A grayscale image with digits planted on it, and where they are.

    image: (H, W) float32 in [0, 1]. tops, lefts: (K,) top-left corners of the 8x8 digits;
    labels: (K,) their classes; sources: (K,) each digit's index in
    ``sklearn.datasets.load_digits()`` (to trace which split it came from).
    """

    image: np.ndarray
    tops: np.ndarray
    lefts: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    seed: int | None = None

    def __len__(self):
        return len(self.labels)


def compose_canvas(images, labels, size=64, count=(4, 6), seed=0, sources=None, max_tries=1000):
    """Paste ``count`` digits drawn from ``images`` at random non-overlapping places.

    images: (N, 1, 8, 8) or (N, 8, 8) in [0, 1]; labels: (N,). size: canvas side, or (H, W).
    count: an int or an inclusive (low, high) range drawn per canvas. The digits are distinct
    samples; their 8x8 boxes do not overlap (they may touch). Everything drawn comes from
    ``np.random.default_rng(seed)``, so a seed always gives the same canvas.
    sources: (N,) ids kept in ``Canvas.sources`` (default: the row numbers in ``images``).

    Shape: returns a Canvas with image (H, W) float32.

    >>> c = compose_canvas(np.ones((10, 1, 8, 8)), np.arange(10), size=32, count=3, seed=1)
    >>> c.image.shape, len(c), float(c.image.sum())
    ((32, 32), 3, 192.0)
    """
    images = np.asarray(images, dtype=np.float32)
    images = images.reshape(images.shape[0], *images.shape[-2:])
    labels = np.asarray(labels)
    if images.shape[1:] != (WINDOW, WINDOW) or labels.shape != images.shape[:1]:
        raise ValueError(f"compose_canvas: images must be (N, 1, 8, 8) with labels (N,), got "
                         f"{images.shape} and {labels.shape}")
    H, W = (size, size) if np.isscalar(size) else tuple(size)
    if H < WINDOW or W < WINDOW:
        raise ValueError(f"compose_canvas: size must be at least {WINDOW}, got {(H, W)}")
    lo, hi = (count, count) if np.isscalar(count) else count
    rng = np.random.default_rng(seed)
    k = int(rng.integers(lo, hi + 1))
    if k > len(images):
        raise ValueError(f"compose_canvas: {k} digits requested from only {len(images)} images")
    picks = rng.choice(len(images), size=k, replace=False)
    tops, lefts = [], []
    for _ in range(k):
        for _ in range(max_tries):
            y, x = int(rng.integers(0, H - WINDOW + 1)), int(rng.integers(0, W - WINDOW + 1))
            # Two 8x8 boxes are disjoint when they are >= 8 apart along some axis.
            if all(abs(y - t) >= WINDOW or abs(x - l) >= WINDOW for t, l in zip(tops, lefts)):
                tops.append(y)
                lefts.append(x)
                break
        else:
            raise ValueError(f"compose_canvas: could not place {k} non-overlapping digits on a "
                             f"{H}x{W} canvas in {max_tries} tries each; use fewer or a larger canvas")
    canvas = np.zeros((H, W), np.float32)
    for p, y, x in zip(picks, tops, lefts):
        canvas[y:y + WINDOW, x:x + WINDOW] = images[p]
    ids = np.arange(len(images)) if sources is None else np.asarray(sources)
    return Canvas(canvas, np.array(tops, np.int64), np.array(lefts, np.int64),
                  labels[picks].astype(np.int64), ids[picks].astype(np.int64), seed)


def test_canvases(n=20, seed=0, size=64, count=(4, 6)):
    """``n`` canvases of held-out digits (the test split only), seeds seed, seed+1, ..."""
    from .data import digits

    test = digits("test")
    return [compose_canvas(test.images, test.labels, size, count, seed + i, sources=test.indices)
            for i in range(n)]


# ----- the background class ----------------------------------------------------------------
def _offsets(canvas, out_h, out_w):
    """Chebyshev distance from every window corner to the nearest planted corner, and which.

    Shape: (out_h, out_w) distances (large where there are no digits) and nearest indices.
    """
    if len(canvas) == 0:
        return np.full((out_h, out_w), 1 << 20), np.zeros((out_h, out_w), np.int64)
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    d = np.maximum(np.abs(ys[..., None] - canvas.tops), np.abs(xs[..., None] - canvas.lefts))
    return d.min(axis=-1), d.argmin(axis=-1)


def window_labels(canvas, positive=1, ignore=2):
    """The training label of every 8x8 window of a canvas (see the module docstring).

    Shape: (H - 7, W - 7) int64: a digit class where the nearest planted digit is at most
    ``positive`` px away (per axis), -1 (unused) up to ``ignore`` px, else BACKGROUND.
    """
    H, W = canvas.image.shape
    dmin, nearest = _offsets(canvas, H - WINDOW + 1, W - WINDOW + 1)
    labels = np.full(dmin.shape, BACKGROUND, np.int64)
    if len(canvas):
        near = dmin <= positive
        labels[near] = canvas.labels[nearest[near]]
    labels[(dmin > positive) & (dmin <= ignore)] = -1
    return labels, dmin


def scanner_training_set(images, labels, seed=0, canvases=300, size=32, count=(2, 4),
                         positives_per_digit=3, negatives_per_positive=1.0, empty_fraction=0.03,
                         noise_fraction=0.05, positive=1, ignore=2):
    """8x8 windows with 11-class labels, cut from canvases composed of ``images``.

    Pass the *train* split. Per planted digit, ``positives_per_digit`` windows at offset 0 or
    1 (offset 0 always among them); background windows: ``negatives_per_positive`` times as
    many hard negatives (offset 3-7: partial digits, two-digit fragments), ``empty_fraction``
    empty windows and ``noise_fraction`` noise patches (fractions of the positives). All draws
    come from ``np.random.default_rng(seed)``.

    Shape: returns x (M, 1, 8, 8) float32 in [0, 1], y (M,) int64 in 0..10.
    """
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31, size=canvases)
    pos_windows, neg_windows, empty_windows = [], [], []
    for s in seeds:
        c = compose_canvas(images, labels, size, count, int(s))
        lab, dmin = window_labels(c, positive, ignore)
        view = np.lib.stride_tricks.sliding_window_view(c.image, (WINDOW, WINDOW))
        for k in range(len(c)):
            # Offset-1 neighbours of digit k that fit on the canvas, then a few of them.
            cand = np.argwhere((dmin <= positive)
                               & (np.abs(np.arange(lab.shape[0])[:, None] - c.tops[k]) <= positive)
                               & (np.abs(np.arange(lab.shape[1])[None, :] - c.lefts[k]) <= positive))
            others = cand[(cand[:, 0] != c.tops[k]) | (cand[:, 1] != c.lefts[k])]
            take = rng.permutation(len(others))[:positives_per_digit - 1]
            for y, x in [(c.tops[k], c.lefts[k])] + [tuple(o) for o in others[take]]:
                pos_windows.append((view[y, x], c.labels[k]))
        hard = np.argwhere((dmin > max(positive, ignore)) & (dmin < WINDOW))
        neg_windows.append(view[hard[:, 0], hard[:, 1]])
        far = np.argwhere(dmin >= WINDOW)
        if len(far):
            y, x = far[rng.integers(len(far))]
            empty_windows.append(view[y, x])
    n_pos = len(pos_windows)
    x_pos = np.stack([w for w, _ in pos_windows])
    y_pos = np.array([c for _, c in pos_windows], np.int64)
    hard = np.concatenate(neg_windows)
    x_hard = hard[rng.choice(len(hard), size=min(len(hard), int(negatives_per_positive * n_pos)),
                             replace=False)]
    empty = np.stack(empty_windows) if empty_windows else np.zeros((0, WINDOW, WINDOW), np.float32)
    x_empty = empty[rng.integers(0, max(len(empty), 1), size=int(empty_fraction * n_pos))] \
        if len(empty) else np.zeros((int(empty_fraction * n_pos), WINDOW, WINDOW), np.float32)
    n_noise = int(noise_fraction * n_pos)
    # Noise of random density (a few specks to every pixel) and brightness (faint to full).
    density = rng.uniform(0.05, 1.0, size=(n_noise, 1, 1))
    x_noise = (rng.random((n_noise, WINDOW, WINDOW)) < density) * rng.uniform(
        0.2, 1.0, size=(n_noise, 1, 1)) * rng.random((n_noise, WINDOW, WINDOW))
    x = np.concatenate([x_pos, x_hard, x_empty, x_noise.astype(np.float32)]).astype(np.float32)
    y = np.concatenate([y_pos, np.full(len(x) - n_pos, BACKGROUND, np.int64)])
    return x.reshape(-1, 1, WINDOW, WINDOW), y


# ----- the scanner model -------------------------------------------------------------------
class DigitsScanner(nn.Module):
    """A digits CNN for scanning: unpadded convolutions, 11 outputs (10 digits + background).

        conv3x3 1->c1 (no padding), BN, ReLU          8x8 -> 6x6
        conv3x3 c1->c2 (no padding), BN, ReLU         6x6 -> 4x4
        max pool 2                                    4x4 -> 2x2   (total stride 2)
        Flatten, Linear c2*4->hidden, ReLU, Linear hidden->num_classes

    Its receptive field is exactly the 8x8 window, so its fully convolutional version scores
    each window of a larger image exactly as the classifier scores that window cut out.

    Shape: (N, 1, 8, 8) -> (N, num_classes).
    """

    def __init__(self, num_classes=11, channels=(16, 32), hidden=64):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 2 * 2, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def digits_scanner(num_classes=11, channels=(16, 32), hidden=64):
    """The scanner network of the dense scan demo (see :class:`DigitsScanner`)."""
    return DigitsScanner(num_classes=num_classes, channels=tuple(channels), hidden=hidden)


SCANNER_CONFIG = {
    "model": "digits_scanner", "model_kwargs": {"num_classes": 11, "channels": [16, 32], "hidden": 64},
    "dataset": "digits+background", "task": "scan", "background_class": BACKGROUND,
    "window": [1, WINDOW, WINDOW], "epochs": 6, "batch_size": 64, "optimizer": "sgd", "lr": 0.05,
    "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "seed": 0,
    "checkpoint_every": None,
    # scanner_training_set's arguments: the background-class scheme
    "training_set": {"canvases": 300, "size": 32, "count": [2, 4], "positive": 1, "ignore": 2,
                     "positives_per_digit": 3, "negatives_per_positive": 1.0,
                     "empty_fraction": 0.03, "noise_fraction": 0.05},
}


def train_scanner(out=None, progress=False, train_digits=None, **overrides):
    """Train a scanner on windows of train-split canvases with ``atrous.train.Trainer``.

    ``overrides`` replace entries of :data:`SCANNER_CONFIG` (epochs, lr, training_set...).
    train_digits: (images, labels) to compose the training canvases from; default the train
    split (the test split is only ever used for the held-out evaluation).
    With ``out`` the run folder gets config.json, checkpoint.npz and metrics.jsonl, which
    ``atrous scan --checkpoint out`` reads. The Trainer's held-out evaluation runs on the
    test split's plain digits (accuracy over the 11 outputs: calling a test digit background
    counts as an error). Returns (model in eval mode, trainer).
    """
    from . import data, manual_seed
    from .cli import build_optimizer, build_scheduler, write_config
    from .train import Trainer

    cfg = dict(SCANNER_CONFIG, **overrides, out=out)
    cfg["training_set"] = dict(SCANNER_CONFIG["training_set"], **overrides.get("training_set", {}))
    manual_seed(cfg["seed"])
    train, test = data.digits("train"), data.digits("test")
    images, labels = (train.images, train.labels) if train_digits is None else train_digits
    x, y = scanner_training_set(images, labels, seed=cfg["seed"], **cfg["training_set"])
    model = digits_scanner(**cfg["model_kwargs"])
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=cfg["batch_size"], shuffle=True,
                             seed=cfg["seed"])
    val = data.DataLoader(data.TensorDataset(test.images, test.labels), batch_size=512)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler, step_on = build_scheduler(cfg, optimizer, len(loader))
    if out is not None:
        write_config(cfg)
    trainer = Trainer(model, optimizer, loader, val, scheduler=scheduler, scheduler_step=step_on,
                      out_dir=out, progress=progress, run_info=cfg)
    trainer.fit(cfg["epochs"])
    model.eval()
    return model, trainer


def load_scanner(run_dir):
    """The model of a run folder (config.json + checkpoint.npz), in eval mode, and its config.

    A ``digits_scanner`` run is built here; any other model through the zoo.
    """
    from .cli import build_model, load_run

    def build(cfg):
        if cfg["model"] == "digits_scanner":
            return digits_scanner(**cfg.get("model_kwargs", {}))
        return build_model(cfg)

    model, cfg, _ = load_run(run_dir, build)
    return model.eval(), cfg


# ----- scanning ------------------------------------------------------------------------------
@dataclass
class ScanResult:
    """Scores of every window of an image.

    logits: (classes, OH, OW) float32, position (i, j) the window whose top-left corner is
    (i * stride, j * stride); window: (h, w); background: the background class or None.
    """

    logits: np.ndarray
    stride: int
    window: tuple
    background: int | None
    passes: int = 1

    def probabilities(self):
        """Softmax over the classes, in float64 (1 - P(background) keeps its resolution)."""
        z = self.logits.astype(np.float64)
        z = z - z.max(axis=0, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=0, keepdims=True)


def _as_image(image):
    a = np.asarray(image.data if isinstance(image, Tensor) else image, dtype=np.float32)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ValueError(f"scan: image must be (H, W), (C, H, W) or (1, C, H, W), got shape {a.shape}")
    return a


def scan(model, image, input_shape=(1, WINDOW, WINDOW), dense=True, background="auto"):
    """Score every window of ``image`` with a classifier, one forward pass per shift.

    model: a Sequential-style classifier (made fully convolutional here by
    ``atrous.surgery.fully_convolutional``) or an already converted one. input_shape: the
    (C, h, w) it classifies. With ``dense`` the image is scanned at S x S offsets (S the
    trunk's total stride) and the maps interleaved, so every pixel position is scored;
    otherwise one pass gives the map at stride S. background: the background class index,
    None for a model without one, or 'auto' (class 10 when the model has 11 outputs).

    Shape: image (H, W) -> ScanResult.logits (classes, H - h + 1, W - w + 1) when dense,
    else (classes, (H - h) // S + 1, (W - w) // S + 1).
    """
    from .surgery import FullyConvolutional, fully_convolutional

    x = _as_image(image)
    fc = model if isinstance(model, FullyConvolutional) else fully_convolutional(model, input_shape)
    fc.eval()
    h, w = fc.window
    H, W = x.shape[2:]
    if H < h or W < w:
        raise ValueError(f"scan: the image ({H}x{W}) is smaller than the {h}x{w} window")
    sh, sw = fc.stride
    if not dense:
        sh = sw = 1
    shifts = [(a, b) for a in range(sh) for b in range(sw) if a <= H - h and b <= W - w]
    OH, OW = H - h + 1, W - w + 1
    with no_grad():
        for n, (a, b) in enumerate(shifts):
            # The pass over the image shifted by (a, b) scores the windows at a + i*S, b + j*S.
            out = np.asarray(fc(np.ascontiguousarray(x[:, :, a:, b:])).data)[0]
            if not dense:
                logits = out
                break
            if n == 0:
                logits = np.empty((out.shape[0], OH, OW), out.dtype)
            rows, cols = len(range(a, OH, fc.stride[0])), len(range(b, OW, fc.stride[1]))
            logits[:, a::fc.stride[0], b::fc.stride[1]] = out[:, :rows, :cols]
    if background == "auto":
        background = BACKGROUND if logits.shape[0] == BACKGROUND + 1 else None
    stride = 1 if dense else fc.stride[0]
    return ScanResult(logits, stride, (h, w), background, passes=len(shifts))


# ----- peaks -----------------------------------------------------------------------------------
@dataclass
class Detection:
    """A digit found at window corner (row, col): class ``label``, its (averaged) probability
    ``score``, and ``evidence``, the averaged P(some digit) that ranked it."""

    label: int
    row: int
    col: int
    score: float
    evidence: float

    @property
    def centre(self):
        return (self.row + (WINDOW - 1) / 2, self.col + (WINDOW - 1) / 2)


def _local_maxima(a, radius):
    """Positions whose value is the maximum of the (2r+1)^2 neighbourhood around them."""
    padded = np.pad(a, radius, constant_values=-np.inf)
    view = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1))
    return a >= view.max(axis=(-2, -1))


def _box_mean(a, radius):
    """Mean over the (2r+1)^2 neighbourhood of each position of the last two axes (the part
    inside the map: border positions average fewer values)."""
    if radius == 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(radius, radius)] * 2
    k = (2 * radius + 1, 2 * radius + 1)
    total = np.lib.stride_tricks.sliding_window_view(np.pad(a, pad), k, axis=(-2, -1)).sum(axis=(-2, -1))
    count = np.lib.stride_tricks.sliding_window_view(np.pad(np.ones(a.shape[-2:]), radius), k).sum(axis=(-2, -1))
    return total / count


def find_detections(result, threshold=0.5, radius=4, smooth=1):
    """Digits on a scanned image: peaks of the digit evidence, suppressed within ``radius``.

    The evidence at a position is P(some digit is there) (1 - P(background); without a
    background class, the top class's probability) averaged over the (2*smooth+1)^2
    positions around it, and each digit class's probability is averaged the same way. The
    scanner is trained to answer "digit" at offsets up to 1 px from a digit, so its response
    to one is a 3x3 plateau; the 3x3 average (``smooth=1``) is the matched filter for that
    plateau: it peaks at the plateau's centre, the digit's place, and lets the nine windows
    vote on the class instead of whichever one happens to be the largest. (Only on dense
    stride-1 maps; a sparse map is used as it is.)

    Detections are positions where the averaged evidence exceeds ``threshold`` and is the
    largest within ``radius`` px, taken best first, dropping any within ``radius`` px (per
    axis) of one already taken, each labelled with its highest averaged class probability.
    Positions are window corners in image pixels (map index times the result's stride).

    Returns a list of Detection, best first.
    """
    probs = result.probabilities()
    if result.background is None:
        digit_probs = probs
        presence = probs.max(axis=0)
    else:
        digit_probs = np.delete(probs, result.background, axis=0)
        presence = 1.0 - probs[result.background]
    s = int(smooth) if result.stride == 1 else 0
    evidence, votes = _box_mean(presence, s), _box_mean(digit_probs, s)
    r = max(int(radius) // result.stride, 0)
    cand = np.argwhere((evidence > threshold) & _local_maxima(evidence, r))
    order = np.argsort(-evidence[cand[:, 0], cand[:, 1]], kind="stable")
    kept = []
    for i, j in cand[order]:
        if all(max(abs(i - k.row // result.stride), abs(j - k.col // result.stride)) > r for k in kept):
            c = int(votes[:, i, j].argmax())
            kept.append(Detection(c, int(i) * result.stride, int(j) * result.stride,
                                  float(votes[c, i, j]), float(evidence[i, j])))
    return kept


# ----- scoring ---------------------------------------------------------------------------------
@dataclass
class Match:
    """Detections of one canvas compared with what was planted."""

    true_positives: int
    false_positives: int
    missed: int
    wrong_class: int  # false positives at a planted digit's place but with another class
    pairs: list = field(default_factory=list)  # (detection index, planted index) matched


def match_detections(detections, canvas, tolerance=2):
    """Greedy matching, best detection first: a detection is a true positive when an
    unmatched planted digit of the same class has its corner within ``tolerance`` px along
    both axes."""
    used = np.zeros(len(canvas), bool)
    tp = wrong = 0
    pairs = []
    for d in sorted(range(len(detections)), key=lambda k: -detections[k].evidence):
        det = detections[d]
        close = (np.abs(canvas.tops - det.row) <= tolerance) & (np.abs(canvas.lefts - det.col) <= tolerance)
        hit = np.flatnonzero(close & ~used & (canvas.labels == det.label))
        if hit.size:
            used[hit[0]] = True
            pairs.append((d, int(hit[0])))
            tp += 1
        elif (close & (canvas.labels != det.label)).any():
            wrong += 1
    return Match(tp, len(detections) - tp, int((~used).sum()), wrong, pairs)


@dataclass
class Quality:
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    missed: int
    wrong_class: int
    planted: int
    canvases: int


def evaluate_canvases(model, canvases, threshold=0.5, radius=4, tolerance=2):
    """Precision and recall of scanning ``canvases`` with ``model`` (see :func:`match_detections`)."""
    from .surgery import FullyConvolutional, fully_convolutional

    fc = model if isinstance(model, FullyConvolutional) else fully_convolutional(model, (1, WINDOW, WINDOW))
    tp = fp = missed = wrong = planted = 0
    for c in canvases:
        m = match_detections(find_detections(scan(fc, c.image), threshold, radius), c, tolerance)
        tp, fp, missed, wrong = tp + m.true_positives, fp + m.false_positives, missed + m.missed, wrong + m.wrong_class
        planted += len(c)
    return Quality(tp / max(tp + fp, 1), tp / max(planted, 1), tp, fp, missed, wrong, planted, len(canvases))


# ----- real images ---------------------------------------------------------------------------
def prepare_image(image, digit_height=None, invert="auto"):
    """Turn a picture into what the scanner was trained on: bright digits ~8 px tall on black.

    image: (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA, floats in [0, 1] or integers
    (0..255). The channels are averaged with the luminance weights (0.299, 0.587, 0.114),
    then stretched to [0, 1]. invert: 'auto' inverts when the picture is mostly bright
    (dark ink on white paper), or True/False. digit_height: how tall the digits are in the
    picture, in pixels; the picture is resized by 8 / digit_height (area averaging when
    shrinking) so they become 8 px tall as in training. None keeps the size.

    Shape: returns (H', W') float32 in [0, 1], H' = round(H * 8 / digit_height).
    """
    a = np.asarray(image)
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / np.iinfo(a.dtype).max
    a = a.astype(np.float64)
    if a.ndim == 3:
        if a.shape[2] == 4:  # RGBA over white: transparent pixels are paper
            a = a[..., :3] * a[..., 3:] + (1 - a[..., 3:])
        if a.shape[2] >= 3:
            a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
        else:
            a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"prepare_image: expected a grayscale or RGB(A) picture, got shape {np.shape(image)}")
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if invert == "auto":
        invert = float(np.median(a)) > 0.5
    if invert:
        a = 1.0 - a
    if digit_height is not None:
        scale = WINDOW / float(digit_height)
        a = _resize(a, max(int(round(a.shape[0] * scale)), 1), max(int(round(a.shape[1] * scale)), 1))
    return np.clip(a, 0, 1).astype(np.float32)


def _resize_matrix(n_in, n_out):
    """(n_out, n_in) weights: each output pixel averages the input interval it covers
    (area resampling); when enlarging, linear interpolation between pixel centres."""
    if n_out <= n_in:
        edges = np.linspace(0, n_in, n_out + 1)
        lo, hi = edges[:-1, None], edges[1:, None]
        k = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(hi, k + 1) - np.maximum(lo, k), 0, None)
        return overlap / overlap.sum(axis=1, keepdims=True)
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    left = np.floor(pos).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), left), 1 - (pos - left))
    np.add.at(m, (np.arange(n_out), right), pos - left)
    return m


def _resize(a, h, w):
    return _resize_matrix(a.shape[0], h) @ a @ _resize_matrix(a.shape[1], w).T
