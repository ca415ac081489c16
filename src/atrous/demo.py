"""End-to-end demo: train ``digits_cnn`` on the real handwritten digits scikit-learn ships,
report held-out accuracy, and write the training curves.

    python -m atrous.demo [--out runs/demo] [--epochs 12]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

DEMO_CONFIG = {
    "model": "digits_cnn", "model_kwargs": {}, "dataset": "digits", "data_root": None,
    "epochs": 15, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
    "weight_decay": 5e-4, "schedule": "cosine", "seed": 0, "checkpoint_every": None,
}


def main(argv=None):
    from .cli import make_trainer, write_config

    p = argparse.ArgumentParser(prog="python -m atrous.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=DEMO_CONFIG["epochs"])
    args = p.parse_args(argv)
    cfg = dict(DEMO_CONFIG, out=args.out, epochs=args.epochs)
    write_config(cfg)
    trainer = make_trainer(cfg)
    n_train, n_test = len(trainer.train_loader.dataset), len(trainer.val_loader.dataset)
    params = sum(p.size for p in trainer.model.parameters())
    print(f"digits_cnn ({params:,} parameters) on scikit-learn's handwritten digits: "
          f"{n_train} training / {n_test} held-out 8x8 images")
    t0 = time.perf_counter()
    history = trainer.fit(cfg["epochs"])
    elapsed = time.perf_counter() - t0
    if trainer.interrupted:
        return 130
    final = history[-1]
    print(f"\ntrained {len(history)} epochs in {elapsed:.1f} s")
    print(f"held-out test accuracy: {100 * final.val_acc:.2f}%")
    print(f"run folder: {args.out} (checkpoint.npz, metrics.jsonl, config.json"
          + (", curves.png)" if os.path.exists(os.path.join(args.out, "curves.png")) else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
