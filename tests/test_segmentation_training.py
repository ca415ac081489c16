"""Segmentation through the Trainer and the CLI: it learns, it resumes bit for bit, it draws."""
import argparse
import contextlib
import functools
import json
import os

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn provides the digits data (pip install -e '.[dev]')")

from atrous import data, manual_seed, optim  # noqa: E402
from atrous.cli import main  # noqa: E402
from atrous.data.digit_scenes import BACKGROUND, digit_scenes  # noqa: E402
from atrous.io import load  # noqa: E402
from atrous.models.segmentation import deeplabv3_tiny  # noqa: E402
from atrous.train import Trainer, evaluate_scores  # noqa: E402

# Small canvases with one or two large digits and a narrow model, for the quick checks.
SCENES = dict(size=32, n_digits=(1, 2), digit_size=(14, 20))
MODEL = dict(width=8)


def _trainer(train, test, out=None, batch_size=16, model_kwargs=MODEL, lr=5e-3, **kw):
    manual_seed(0)
    model = deeplabv3_tiny(num_classes=11, **model_kwargs)
    loader = data.DataLoader(data.TensorDataset(train.images, train.masks), batch_size=batch_size,
                             shuffle=True, seed=0)
    val = data.DataLoader(data.TensorDataset(test.images, test.masks), batch_size=64)
    opt = optim.Adam(model.parameters(), lr=lr)
    return Trainer(model, opt, loader, val, task="segment", progress=False, out_dir=out, **kw)


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _reference_scores(model, test):
    """Pixel accuracy and mIoU recomputed here with plain loops over classes."""
    from atrous.autograd import no_grad

    model.eval()
    with no_grad():
        pred = np.concatenate([np.asarray(model(test.images[i:i + 64])["out"].data).argmax(1)
                               for i in range(0, len(test), 64)])
    t = test.masks
    ious = []
    for c in range(11):
        inter, union = np.sum((pred == c) & (t == c)), np.sum((pred == c) | (t == c))
        if union:
            ious.append(inter / union)
    return float((pred == t).mean()), float(np.mean(ious))


def test_reduced_budget_training_learns_far_beyond_the_background_baseline():
    """The full model on 48x48 scenes, 6 short epochs (576 steps of 8 scenes). Background
    weighs 0.3 in the loss: with 9 pixels in 10 background, an unweighted loss spends its
    first hundred steps predicting background everywhere, a plateau this budget cannot
    afford (the 10-minute runs in docs/segmentation.md use the plain loss)."""
    from atrous import functional as F

    scenes = dict(size=48, n_digits=(1, 3), digit_size=(12, 20))
    train = digit_scenes("train", n_scenes=768, **scenes)
    test = digit_scenes("test", n_scenes=128, **scenes)
    weight = np.ones(11, np.float32)
    weight[BACKGROUND] = 0.3
    loss_fn = functools.partial(F.cross_entropy, weight=weight, ignore_index=255)
    trainer = _trainer(train, test, batch_size=8, model_kwargs={}, loss_fn=loss_fn)
    with _one_blas_thread():  # tiny GEMMs: one thread is as fast, and immune to a busy machine
        trainer.fit(6)
    h = trainer.history[-1]
    acc, miou = _reference_scores(trainer.model, test)
    assert h.val_acc == pytest.approx(acc, abs=1e-12)
    assert h.val_miou == pytest.approx(miou, abs=1e-12)
    # All-background: IoU = background share for that class, 0 for the 10 digits present.
    baseline = float((test.masks == BACKGROUND).mean()) / len(np.unique(test.masks))
    assert baseline < 0.1
    # Held-out mIoU on 128 scenes swings by 0.1 between epochs: the best epoch must clear the bar.
    mious = [round(r.val_miou, 3) for r in trainer.history]
    assert max(mious) > baseline + 0.2, (mious, baseline)
    assert h.val_miou > trainer.history[0].val_miou + 0.1, mious
    assert [r.train_loss for r in trainer.history] == sorted([r.train_loss for r in trainer.history], reverse=True)


def test_segmentation_resume_mid_epoch_is_bit_exact(tmp_path):
    """Stop after 2 batches of epoch 2 (as Ctrl-C does), resume from the checkpoint in a fresh
    trainer: weights, losses, pixel accuracy and mIoU equal those of an uninterrupted run."""
    train = digit_scenes("train", n_scenes=48, **SCENES)
    test = digit_scenes("test", n_scenes=16, **SCENES)
    full = _trainer(train, test)
    full.fit(2)

    out = str(tmp_path / "run")
    stopped = _trainer(train, test, out=out)
    calls = {"n": 0}
    loss_fn = stopped.loss_fn

    def stop_after(*args, **kwargs):
        calls["n"] += stopped.model.training  # training batches only, not the evaluation
        if calls["n"] == 3 + 2:  # 3 batches per epoch: the 2nd batch of epoch 2
            stopped._stop_requested = True
        return loss_fn(*args, **kwargs)

    stopped.loss_fn = stop_after
    stopped.fit(2)
    assert stopped.interrupted and stopped.epoch == 1 and stopped._batches_done == 2
    state = load(os.path.join(out, "checkpoint.npz"))
    assert state["sums"]["confusion"].shape == (11, 11)  # the epoch's confusion matrix is kept

    resumed = _trainer(train, test, out=out)
    resumed.resume()
    resumed.fit(2)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for x, y in zip(full.history, resumed.history):
        for key in ("train_loss", "train_acc", "train_miou", "val_loss", "val_acc", "val_miou"):
            assert getattr(x, key) == getattr(y, key), key
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_miou" in r for r in rows)


def test_dict_output_adds_half_the_aux_loss():
    from atrous import functional as F
    from atrous.tensor import Tensor

    scenes = digit_scenes("test", n_scenes=4, **SCENES)
    manual_seed(1)
    model = deeplabv3_tiny(num_classes=11, aux_loss=True, **MODEL).eval()
    out = model(Tensor(scenes.images))
    expected = (F.cross_entropy(out["out"], scenes.masks).item()
                + 0.5 * F.cross_entropy(out["aux"], scenes.masks).item())
    loader = data.DataLoader(data.TensorDataset(scenes.images, scenes.masks), batch_size=4)
    s = evaluate_scores(model, loader, task="segment", aux_weight=0.5)
    assert s.loss == pytest.approx(expected, rel=1e-5)
    assert evaluate_scores(model, loader, task="segment").loss == pytest.approx(
        F.cross_entropy(out["out"], scenes.masks).item(), rel=1e-5)


def test_ignore_index_pixels_count_nowhere():
    scenes = digit_scenes("test", n_scenes=4, **SCENES)
    masks = scenes.masks.copy()
    masks[:, :, :16] = 255  # ignore the left half
    manual_seed(2)
    model = deeplabv3_tiny(num_classes=11, **MODEL)
    half = evaluate_scores(model, data.DataLoader(data.TensorDataset(scenes.images, masks), batch_size=4),
                           task="segment")
    assert half.confusion.sum() == masks.size // 2


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("seg"))
    code = main(["train", "--task", "segment", "--model", "deeplab_tiny", "--model-kwargs", '{"width": 8}',
                 "--dataset", "digit_scenes", "--scene-size", "32", "--scenes", "48", "--test-scenes", "16",
                 "--epochs", "1", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.005",
                 "--out", out, "--quiet"])
    assert code == 0
    return out


def test_cli_train_then_evaluate_reports_the_same_miou(cli_run, capsys):
    capsys.readouterr()
    row = json.loads(open(os.path.join(cli_run, "metrics.jsonl")).read().splitlines()[-1])
    assert main(["evaluate", "--checkpoint", cli_run]) == 0
    out = capsys.readouterr().out
    assert f"mIoU {row['val_miou']:.4f}" in out and "IoU per class" in out
    cfg = json.load(open(os.path.join(cli_run, "config.json")))
    assert cfg["task"] == "segment" and cfg["dataset_kwargs"]["size"] == 32


def test_segment_command_writes_an_overlay_png(cli_run, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the overlay is drawn with matplotlib")
    from atrous.commands import segment

    parser = argparse.ArgumentParser()
    segment.register(parser.add_subparsers(dest="command"))
    png = str(tmp_path / "overlay.png")
    args = parser.parse_args(["segment", "--checkpoint", cli_run, "--scene", "--seed", "3", "--out", png])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "this scene: mIoU" in out and "planted:" in out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # A picture file works too: the scene saved as a PNG, segmented back.
    import matplotlib.image as mpimg

    pic = str(tmp_path / "scene.png")
    mpimg.imsave(pic, digit_scenes("test", size=32, n_scenes=1, seed=3).images[0, 0], cmap="gray")
    args = parser.parse_args(["segment", "--checkpoint", cli_run, "--image", pic, "--out", png])
    assert args.func(args) == 0


def test_segment_command_refuses_a_classification_run(tmp_path):
    from atrous.commands.segment import _load_run

    out = tmp_path / "cls"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"model": "digits_cnn", "dataset": "digits"}))
    with pytest.raises(SystemExit, match="classify"):
        _load_run(str(out))
