"""Training curves; ``pyplot()`` is the one place matplotlib is configured (Agg, files only)."""
from __future__ import annotations

import io

from ..io.atomic import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=110):
    """Render ``fig`` to PNG in memory, close it, then write ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def plot_training_curves(history, path):
    """Loss and accuracy per epoch (train and held-out) side by side, saved as a PNG."""
    plt = pyplot()
    epochs = [h.epoch for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    ax_loss.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * h.train_acc for h in history], "o-", label="train")
    if any(h.val_loss is not None for h in history):
        ax_loss.plot(epochs, [h.val_loss for h in history], "s-", label="held-out")
        ax_acc.plot(epochs, [100 * h.val_acc for h in history], "s-", label="held-out")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)
