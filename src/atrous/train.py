"""Training loop: epochs with a progress bar, evaluation, metrics log, checkpoints, resume.

A checkpoint holds everything a run depends on: model, optimizer and scheduler state, the
data loader's shuffling state as it was at the start of the current epoch, how many batches
of that epoch are done, the running sums of the epoch's metrics and the global RNG (dropout).
Resuming replays the epoch's batch order and skips the batches already done, so a run that
was interrupted and resumed produces, bit for bit, the same losses and weights as one that
never stopped. Checkpoints are written atomically; Ctrl-C writes one before stopping.

Two tasks share the loop:

* ``task='classify'``: targets (N,), logits (N, C); accuracy = correct images / images.
* ``task='segment'``: targets (N, H, W), logits (N, C, H, W) at the input size; pixels equal to
  ``ignore_index`` (255, as torchvision's reference) count in neither the loss nor the
  metrics. Accuracy is per pixel (correct labelled pixels / labelled pixels) and the epoch's
  confusion matrix gives the mean IoU (``train_miou``, ``val_miou`` in ``metrics.jsonl``).
  The confusion matrix is part of the running sums, so a resumed epoch reports the same mIoU.

A model may return a dict ``{'out': logits, 'aux': logits}`` (torchvision's segmentation
models): the loss is ``loss(out) + aux_weight * loss(aux)`` (0.5, torchvision's reference
recipe) and the metrics are taken on ``out``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import random as arandom
from .autograd import no_grad
from .io.atomic import atomic_write
from .io.checkpoint import load, save
from .tensor import Tensor

CHECKPOINT_NAME = "checkpoint.npz"


class _StopRequested(Exception):
    """Raised at a batch boundary after Ctrl-C, so the saved state is never half a step."""
METRICS_NAME = "metrics.jsonl"


TASKS = ("classify", "segment")
SEGMENT_IGNORE_INDEX = 255


@dataclass
class EpochMetrics:
    """One epoch's figures. For segmentation runs ``*_acc`` is pixel accuracy and ``*_miou``
    the mean IoU over classes; for classification the mIoU fields are None (and left out of
    ``metrics.jsonl``)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float
    images_per_s: float
    train_miou: float | None = None
    val_miou: float | None = None

    def row(self):
        r = asdict(self)
        if self.train_miou is None and self.val_miou is None:
            del r["train_miou"], r["val_miou"]
        return r


@dataclass
class Scores:
    """What :func:`evaluate_scores` measures over a loader. ``acc``: correct / counted, with
    counted the images (classify) or labelled pixels (segment); ``confusion``: (C, C) counts,
    rows the true class, columns the predicted one (segment only, else None); ``iou``: per
    class, NaN for a class absent from both targets and predictions; ``miou``: their mean over
    present classes."""

    loss: float
    acc: float
    miou: float | None = None
    iou: np.ndarray | None = None
    confusion: np.ndarray | None = None
    images: int = 0


def _main_output(output):
    """The logits a metric looks at: ``output['out']`` for a dict of outputs."""
    return output["out"] if isinstance(output, dict) else output


def _task_loss(loss_fn, output, target, aux_weight):
    if not isinstance(output, dict):
        return loss_fn(output, target)
    loss = loss_fn(output["out"], target)
    if output.get("aux") is not None and aux_weight:
        loss = loss + aux_weight * loss_fn(output["aux"], target)
    return loss


class _Tally:
    """Running sums of one pass: loss, correct/counted (images or labelled pixels), images
    seen, seconds, and for segmentation the confusion matrix (allocated at the first batch,
    when the number of classes is known from the logits)."""

    def __init__(self, task, ignore_index, state=None):
        self.task, self.ignore_index = task, ignore_index
        self.loss_sum, self.correct, self.seen, self.seconds, self.counted = 0.0, 0, 0, 0.0, 0
        self.confusion = None
        if state is not None:
            self.load(state)

    def add(self, logits, target, loss_value):
        pred = np.asarray(logits).argmax(axis=1)
        target = np.asarray(target)
        n = len(target)
        self.loss_sum += loss_value * n
        self.seen += n
        if self.task == "segment":
            from .metrics import confusion_matrix

            C = np.asarray(logits).shape[1]
            cm = confusion_matrix(pred, target, C, self.ignore_index)
            self.confusion = cm if self.confusion is None else self.confusion + cm
            self.correct += int(np.trace(cm))
            self.counted += int(cm.sum())
        else:
            self.correct += int((pred == target).sum())
            self.counted += n

    @property
    def loss(self):
        return self.loss_sum / max(self.seen, 1)

    @property
    def acc(self):
        return self.correct / max(self.counted, 1)

    @property
    def miou(self):
        if self.confusion is None:
            return None
        from .metrics import mean_iou

        return mean_iou(self.confusion)

    def state(self):
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen,
                "seconds": self.seconds, "counted": self.counted, "confusion": self.confusion}

    def load(self, state):
        if isinstance(state, (list, tuple)):  # checkpoints before segmentation: four sums
            loss_sum, correct, seen, seconds = state
            state = {"loss_sum": loss_sum, "correct": correct, "seen": seen, "seconds": seconds,
                     "counted": seen, "confusion": None}
        self.loss_sum, self.seconds = float(state["loss_sum"]), float(state["seconds"])
        self.correct, self.seen, self.counted = int(state["correct"]), int(state["seen"]), int(state["counted"])
        cm = state["confusion"]
        self.confusion = None if cm is None else np.asarray(cm, np.int64).copy()


def evaluate_scores(model, loader, loss_fn=None, task="classify", ignore_index=None, aux_weight=0.0):
    """Loss, accuracy and (segment) confusion matrix and IoUs of ``model`` over ``loader``,
    in eval mode without a graph. Returns :class:`Scores`. ``aux_weight`` defaults to 0:
    held-out loss is that of the main output alone, as torchvision's reference evaluates."""
    from . import functional as F

    if task not in TASKS:
        raise ValueError(f"evaluate_scores: task must be one of {TASKS}, got {task!r}")
    if ignore_index is None:
        ignore_index = SEGMENT_IGNORE_INDEX if task == "segment" else -100
    loss_fn = loss_fn or functools.partial(F.cross_entropy, ignore_index=ignore_index)
    tally = _Tally(task, ignore_index)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for x, y in loader:
                output = model(Tensor(x))
                loss = _task_loss(loss_fn, output, y, aux_weight)
                tally.add(_main_output(output).data, y, float(loss.item()))
    finally:
        model.train(was_training)
    if tally.confusion is None:
        return Scores(tally.loss, tally.acc, images=tally.seen)
    from .metrics import iou_per_class

    return Scores(tally.loss, tally.acc, tally.miou, iou_per_class(tally.confusion), tally.confusion,
                  tally.seen)


def evaluate(model, loader, loss_fn=None):
    """Mean loss and accuracy of ``model`` over ``loader`` (in eval mode, without a graph)."""
    s = evaluate_scores(model, loader, loss_fn)
    return s.loss, s.acc


class Trainer:
    """Runs ``fit(epochs)`` over a train loader, evaluating on ``val_loader`` after each epoch.

    scheduler_step: 'epoch' calls ``scheduler.step()`` after each epoch, 'batch' after each
    optimizer step (OneCycleLR). checkpoint_every: also write a checkpoint every that many
    batches (besides each epoch end). out_dir holds ``checkpoint.npz``, ``metrics.jsonl`` and,
    with matplotlib installed, ``curves.png``.

    task: 'classify' or 'segment' (see the module docstring); ignore_index: target value left
    out of loss and metrics (default -100 for classify, 255 for segment; used by the default
    loss, cross-entropy); aux_weight: weight of a dict output's 'aux' loss in training.
    """

    def __init__(self, model, optimizer, train_loader, val_loader=None, loss_fn=None,
                 scheduler=None, scheduler_step="epoch", out_dir=None, progress=True,
                 checkpoint_every=None, run_info=None, task="classify", ignore_index=None,
                 aux_weight=0.5):
        from . import functional as F

        if scheduler_step not in ("epoch", "batch"):
            raise ValueError(f"Trainer: scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}")
        if task not in TASKS:
            raise ValueError(f"Trainer: task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.ignore_index = (SEGMENT_IGNORE_INDEX if task == "segment" else -100) if ignore_index is None \
            else int(ignore_index)
        self.aux_weight = float(aux_weight)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.val_loader = train_loader, val_loader
        self.loss_fn = loss_fn or functools.partial(F.cross_entropy, ignore_index=self.ignore_index)
        self.scheduler_step = scheduler_step
        self.out_dir = out_dir
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.run_info = dict(run_info or {})
        self.history: list[EpochMetrics] = []
        self.epoch = 0  # completed epochs
        self.interrupted = False
        self._stop_requested = False
        # Position inside the current epoch, for exact mid-epoch resume.
        self._epoch_loader_state = None
        self._batches_done = 0
        self._tally = _Tally(task, self.ignore_index)  # the current epoch's running sums
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)

    # ----- checkpoints -------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return None if self.out_dir is None else os.path.join(self.out_dir, CHECKPOINT_NAME)

    def state_dict(self):
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "epoch": self.epoch,
            "batches_done": self._batches_done,
            "epoch_loader_state": self._epoch_loader_state,
            "sums": self._tally.state(),
            "rng": arandom.get_rng_state(),
            "history": [asdict(h) for h in self.history],
            "run_info": self.run_info,
        }

    def save(self, path=None):
        path = path or self.checkpoint_path
        if path is not None:
            save(self.state_dict(), path)
        return path

    def resume(self, path=None):
        """Restore a run from a checkpoint written by ``save`` (default: out_dir's)."""
        state = load(path or self.checkpoint_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self._batches_done = int(state["batches_done"])
        self._epoch_loader_state = state["epoch_loader_state"]
        self._tally = _Tally(self.task, self.ignore_index, state["sums"])
        arandom.set_rng_state(state["rng"])
        self.history = [EpochMetrics(**h) for h in state["history"]]
        return state

    def _write_metrics(self):
        if self.out_dir is None:
            return
        with atomic_write(os.path.join(self.out_dir, METRICS_NAME), "w") as f:
            for h in self.history:
                f.write(json.dumps(h.row()) + "\n")

    # ----- the loop ------------------------------------------------------------------------
    def _bar(self, total, epoch, epochs):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True)

    def _lr(self):
        return float(self.optimizer.param_groups[0]["lr"])

    def _train_epoch(self, epochs):
        loader = self.train_loader
        if self._epoch_loader_state is None:
            self._epoch_loader_state = loader.state_dict()
        else:
            loader.load_state_dict(self._epoch_loader_state)
        skip = self._batches_done
        tally = self._tally
        bar = self._bar(len(loader), self.epoch + 1, epochs)
        if bar is not None:
            bar.update(skip)
        self.model.train()
        try:
            for i, (x, y) in enumerate(loader):
                if i < skip:  # replay the epoch's batch order up to where the run stopped
                    continue
                t0 = time.perf_counter()
                output = self.model(Tensor(x))
                loss = _task_loss(self.loss_fn, output, y, self.aux_weight)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                if self.scheduler is not None and self.scheduler_step == "batch":
                    self.scheduler.step()
                tally.seconds += time.perf_counter() - t0
                tally.add(_main_output(output).data, y, float(loss.item()))
                self._batches_done = i + 1
                if bar is not None:
                    extra = {} if tally.confusion is None else {"miou": f"{tally.miou:.3f}"}
                    bar.set_postfix(loss=f"{tally.loss:.4f}", acc=f"{tally.acc:.3f}", **extra,
                                    img_s=f"{tally.seen / max(tally.seconds, 1e-9):.0f}")
                    bar.update(1)
                if self.checkpoint_every and self._batches_done % self.checkpoint_every == 0:
                    self.save()
                if self._stop_requested:
                    raise _StopRequested
        finally:
            if bar is not None:
                bar.close()
        return tally

    @contextlib.contextmanager
    def _deferred_sigint(self):
        """Turn the first Ctrl-C into a request to stop at the next batch boundary."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self._stop_requested = True
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def fit(self, epochs):
        """Train until ``epochs`` epochs are complete (counting those of a resumed run)."""
        self._stop_requested = False
        try:
            with self._deferred_sigint():
                self._fit(epochs)
        except _StopRequested:
            self.interrupted = True
            path = self.save()
            if path:
                print(f"interrupted: checkpoint written to {path}; resume to continue", flush=True)
        self.plot()
        return self.history

    def _fit(self, epochs):
        while self.epoch < epochs:
            t = self._train_epoch(epochs)
            val = None
            if self.val_loader is not None:
                val = evaluate_scores(self.model, self.val_loader, self.loss_fn, self.task,
                                      self.ignore_index)
            lr = self._lr()
            if self.scheduler is not None and self.scheduler_step == "epoch":
                self.scheduler.step()
            self.epoch += 1
            m = EpochMetrics(self.epoch, t.loss, t.acc, None if val is None else val.loss,
                             None if val is None else val.acc, lr, t.seconds,
                             t.seen / max(t.seconds, 1e-9), train_miou=t.miou,
                             val_miou=None if val is None else val.miou)
            self.history.append(m)
            # The loader's state now is the next epoch's starting state.
            self._batches_done, self._tally = 0, _Tally(self.task, self.ignore_index)
            self._epoch_loader_state = self.train_loader.state_dict()
            self._report(m, epochs)
            self.save()
            self._write_metrics()
            if self._stop_requested:
                raise _StopRequested

    def _report(self, m, epochs):
        if not self.progress:
            return
        val = "" if m.val_acc is None else f"  val_loss {m.val_loss:.4f}  val_acc {m.val_acc:.4f}"
        if m.val_miou is not None:
            val += f"  val_miou {m.val_miou:.4f}"
        print(f"epoch {m.epoch}/{epochs}  loss {m.train_loss:.4f}  acc {m.train_acc:.4f}{val}  "
              f"{m.images_per_s:.0f} img/s  lr {m.lr:.3g}", flush=True)

    def plot(self):
        """Write curves.png (loss and accuracy per epoch) when matplotlib is available."""
        if self.out_dir is None or not self.history:
            return None
        try:
            from .viz import plot_training_curves
        except ImportError:
            return None
        try:
            return plot_training_curves(self.history, os.path.join(self.out_dir, "curves.png"))
        except ImportError:
            return None
