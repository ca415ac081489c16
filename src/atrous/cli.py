"""The ``atrous`` command line: train, evaluate and list the model zoo.

    atrous models
    atrous train --model digits_cnn --dataset digits --epochs 12 --out runs/digits
    atrous train --out runs/digits --resume          # continue an interrupted run
    atrous evaluate --checkpoint runs/digits
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .io.atomic import atomic_write

CONFIG_NAME = "config.json"


# ----- building blocks shared by train, evaluate and the demo ------------------------------
def load_dataset(name, split, root=None):
    """Return ``(images, labels)`` NumPy arrays of a named dataset split."""
    from . import data

    if name == "digits":
        ds = data.digits(split=split)
    elif name in ("mnist", "cifar10"):
        if root is None:
            raise SystemExit(f"atrous: --data-root is required for dataset '{name}'")
        ds = getattr(data, name)(root, split=split)
    else:
        raise SystemExit(f"atrous: unknown dataset '{name}' (choose digits, mnist or cifar10)")
    return ds.images, ds.labels


def build_optimizer(cfg, params):
    from . import optim

    kind = cfg["optimizer"]
    if kind == "sgd":
        return optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                         weight_decay=cfg["weight_decay"], nesterov=cfg["momentum"] > 0)
    if kind == "adam":
        return optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if kind == "adamw":
        return optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise SystemExit(f"atrous: unknown optimizer '{kind}' (choose sgd, adam or adamw)")


def build_scheduler(cfg, optimizer, steps_per_epoch):
    """Returns (scheduler or None, 'epoch' | 'batch')."""
    from .optim import lr_scheduler

    kind = cfg["schedule"]
    if kind == "none":
        return None, "epoch"
    if kind == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"]), "epoch"
    if kind == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(cfg["epochs"] // 3, 1), gamma=0.1), "epoch"
    if kind == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=cfg["lr"], epochs=cfg["epochs"],
                                       steps_per_epoch=steps_per_epoch), "batch"
    raise SystemExit(f"atrous: unknown schedule '{kind}' (choose none, cosine, step or onecycle)")


def build_model(cfg):
    from . import models

    return models.get_model(cfg["model"], **cfg.get("model_kwargs", {}))


def make_trainer(cfg, progress=True):
    """Model, data, optimizer and schedule for a run config; returns (trainer, test data)."""
    from . import data, manual_seed
    from .train import Trainer

    manual_seed(cfg["seed"])
    x_train, y_train = load_dataset(cfg["dataset"], "train", cfg.get("data_root"))
    x_test, y_test = load_dataset(cfg["dataset"], "test", cfg.get("data_root"))
    model = build_model(cfg)
    train_loader = data.DataLoader(data.TensorDataset(x_train, y_train), batch_size=cfg["batch_size"],
                                   shuffle=True, seed=cfg["seed"])
    test_loader = data.DataLoader(data.TensorDataset(x_test, y_test), batch_size=256)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler, step_on = build_scheduler(cfg, optimizer, len(train_loader))
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_step=step_on, out_dir=cfg["out"], progress=progress,
                      checkpoint_every=cfg.get("checkpoint_every"), run_info=cfg)
    return trainer


def write_config(cfg):
    os.makedirs(cfg["out"], exist_ok=True)
    with atomic_write(os.path.join(cfg["out"], CONFIG_NAME), "w") as f:
        json.dump(cfg, f, indent=2)


def read_config(run_dir):
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.exists(path):
        raise SystemExit(f"atrous: {path} not found; is {run_dir} a run folder written by 'atrous train'?")
    with open(path) as f:
        return json.load(f)


# ----- commands ----------------------------------------------------------------------------
def cmd_models(args):
    from . import models

    print(f"{'model':<24}{'parameters':>16}")
    for name in models.list_models():
        model = models.get_model(name)
        count = sum(p.size for p in model.parameters())
        print(f"{name:<24}{count:>16,}")
    return 0


def cmd_train(args):
    from .train import CHECKPOINT_NAME

    if args.resume:
        cfg = read_config(args.out)
        cfg["epochs"] = args.epochs if args.epochs is not None else cfg["epochs"]
    else:
        cfg = {
            "model": args.model, "model_kwargs": json.loads(args.model_kwargs),
            "dataset": args.dataset, "data_root": args.data_root, "epochs": args.epochs or 10,
            "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
            "momentum": args.momentum, "weight_decay": args.weight_decay, "schedule": args.schedule,
            "seed": args.seed, "out": args.out, "checkpoint_every": args.checkpoint_every,
        }
    write_config(cfg)
    trainer = make_trainer(cfg, progress=not args.quiet)
    if args.resume:
        path = os.path.join(args.out, CHECKPOINT_NAME)
        if not os.path.exists(path):
            raise SystemExit(f"atrous: nothing to resume: {path} does not exist")
        trainer.resume(path)
        print(f"resumed from {path} at epoch {trainer.epoch}, batch {trainer._batches_done}")
    history = trainer.fit(cfg["epochs"])
    if trainer.interrupted:
        return 130
    if history and history[-1].val_acc is not None:
        print(f"test accuracy {100 * history[-1].val_acc:.2f}%  (run folder: {cfg['out']})")
    return 0


def cmd_evaluate(args):
    from . import data
    from .io.checkpoint import load
    from .train import CHECKPOINT_NAME, evaluate

    run_dir = args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint)
    path = os.path.join(args.checkpoint, CHECKPOINT_NAME) if os.path.isdir(args.checkpoint) else args.checkpoint
    cfg = read_config(run_dir)
    model = build_model(cfg)
    model.load_state_dict(load(path)["model"])
    x, y = load_dataset(cfg["dataset"], args.split, cfg.get("data_root"))
    loss, acc = evaluate(model, data.DataLoader(data.TensorDataset(x, y), batch_size=256))
    print(f"{cfg['model']} on {cfg['dataset']}/{args.split}: loss {loss:.4f}  accuracy {100 * acc:.2f}%  ({len(y)} images)")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="atrous", description="Convolutional networks in NumPy.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the model zoo with parameter counts").set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a model and write checkpoints, metrics and curves",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--model", default="digits_cnn", help="zoo name (see 'atrous models')")
    t.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for the model")
    t.add_argument("--dataset", default="digits", choices=["digits", "mnist", "cifar10"])
    t.add_argument("--data-root", default=None, help="folder with MNIST IDX or CIFAR-10 binary files")
    t.add_argument("--epochs", type=int, default=None, help="total epochs (default 10; with --resume, the run's)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--schedule", default="cosine", choices=["none", "cosine", "step", "onecycle"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/train", help="run folder")
    t.add_argument("--checkpoint-every", type=int, default=None, help="also checkpoint every N batches")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run on a dataset split")
    e.add_argument("--checkpoint", required=True, help="run folder or checkpoint file")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.set_defaults(func=cmd_evaluate)

    from .commands import register_all

    register_all(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
