"""Training loop: epochs with a progress bar, evaluation, metrics log, checkpoints, resume.

A checkpoint holds everything a run depends on: model, optimizer and scheduler state, the
data loader's shuffling state as it was at the start of the current epoch, how many batches
of that epoch are done, the running sums of the epoch's metrics and the global RNG (dropout).
Resuming replays the epoch's batch order and skips the batches already done, so a run that
was interrupted and resumed produces, bit for bit, the same losses and weights as one that
never stopped. Checkpoints are written atomically; Ctrl-C writes one before stopping.
"""
from __future__ import annotations

import contextlib
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


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float
    images_per_s: float


def _accuracy_counts(logits, target):
    pred = np.asarray(logits).argmax(axis=1)
    return int((pred == target).sum())


def evaluate(model, loader, loss_fn=None):
    """Mean loss and accuracy of ``model`` over ``loader`` (in eval mode, without a graph)."""
    from . import functional as F

    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with no_grad():
            for x, y in loader:
                logits = model(Tensor(x))
                loss_sum += float(loss_fn(logits, y).item()) * len(y)
                correct += _accuracy_counts(logits.data, y)
                seen += len(y)
    finally:
        model.train(was_training)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


class Trainer:
    """Runs ``fit(epochs)`` over a train loader, evaluating on ``val_loader`` after each epoch.

    scheduler_step: 'epoch' calls ``scheduler.step()`` after each epoch, 'batch' after each
    optimizer step (OneCycleLR). checkpoint_every: also write a checkpoint every that many
    batches (besides each epoch end). out_dir holds ``checkpoint.npz``, ``metrics.jsonl`` and,
    with matplotlib installed, ``curves.png``.
    """

    def __init__(self, model, optimizer, train_loader, val_loader=None, loss_fn=None,
                 scheduler=None, scheduler_step="epoch", out_dir=None, progress=True,
                 checkpoint_every=None, run_info=None):
        from . import functional as F

        if scheduler_step not in ("epoch", "batch"):
            raise ValueError(f"Trainer: scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.val_loader = train_loader, val_loader
        self.loss_fn = loss_fn or F.cross_entropy
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
        self._sums = (0.0, 0, 0, 0.0)  # loss_sum, correct, seen, seconds
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
            "sums": list(self._sums),
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
        loss_sum, correct, seen, seconds = state["sums"]
        self._sums = (float(loss_sum), int(correct), int(seen), float(seconds))
        arandom.set_rng_state(state["rng"])
        self.history = [EpochMetrics(**h) for h in state["history"]]
        return state

    def _write_metrics(self):
        if self.out_dir is None:
            return
        with atomic_write(os.path.join(self.out_dir, METRICS_NAME), "w") as f:
            for h in self.history:
                f.write(json.dumps(asdict(h)) + "\n")

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
        loss_sum, correct, seen, seconds = self._sums
        bar = self._bar(len(loader), self.epoch + 1, epochs)
        if bar is not None:
            bar.update(skip)
        self.model.train()
        try:
            for i, (x, y) in enumerate(loader):
                if i < skip:  # replay the epoch's batch order up to where the run stopped
                    continue
                t0 = time.perf_counter()
                logits = self.model(Tensor(x))
                loss = self.loss_fn(logits, y)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                if self.scheduler is not None and self.scheduler_step == "batch":
                    self.scheduler.step()
                seconds += time.perf_counter() - t0
                loss_sum += float(loss.item()) * len(y)
                correct += _accuracy_counts(logits.data, y)
                seen += len(y)
                self._batches_done = i + 1
                self._sums = (loss_sum, correct, seen, seconds)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                    img_s=f"{seen / max(seconds, 1e-9):.0f}")
                    bar.update(1)
                if self.checkpoint_every and self._batches_done % self.checkpoint_every == 0:
                    self.save()
                if self._stop_requested:
                    raise _StopRequested
        finally:
            if bar is not None:
                bar.close()
        return loss_sum, correct, seen, seconds

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
            loss_sum, correct, seen, seconds = self._train_epoch(epochs)
            val_loss = val_acc = None
            if self.val_loader is not None:
                val_loss, val_acc = evaluate(self.model, self.val_loader, self.loss_fn)
            lr = self._lr()
            if self.scheduler is not None and self.scheduler_step == "epoch":
                self.scheduler.step()
            self.epoch += 1
            m = EpochMetrics(self.epoch, loss_sum / max(seen, 1), correct / max(seen, 1),
                             val_loss, val_acc, lr, seconds, seen / max(seconds, 1e-9))
            self.history.append(m)
            # The loader's state now is the next epoch's starting state.
            self._batches_done, self._sums = 0, (0.0, 0, 0, 0.0)
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
