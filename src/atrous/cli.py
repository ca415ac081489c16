"""The ``atrous`` command line: train, evaluate and list the model zoo.

    atrous models
    atrous train --model digits_cnn --dataset digits --epochs 12 --out runs/digits
    atrous train --out runs/digits --resume          # continue an interrupted run
    atrous evaluate --checkpoint runs/digits

Segmentation runs (``--task segment``, the default for ``--dataset digit_scenes``) take their
model from the segmentation registry (``atrous.models.get_segmentation_model``) and report
pixel accuracy and mean IoU:

    atrous train --task segment --model deeplab_tiny --dataset digit_scenes --out runs/seg
    atrous evaluate --checkpoint runs/seg
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .io.atomic import atomic_write

CONFIG_NAME = "config.json"


# ----- building blocks shared by train, evaluate and the demo ------------------------------
DATASETS = ("digits", "mnist", "cifar10", "digit_scenes")
SEGMENTATION_DATASETS = ("digit_scenes",)


def load_dataset(name, split, root=None, options=None):
    """Return ``(images, labels)`` NumPy arrays of a named dataset split.

    For ``digit_scenes`` the labels are (N, H, W) masks and ``options`` holds the scene
    settings (``size``, ``n_scenes`` / ``n_test_scenes``, ``n_digits``, ``seed``...).
    """
    from . import data

    if name == "digits":
        ds = data.digits(split=split)
    elif name in ("mnist", "cifar10"):
        if root is None:
            raise SystemExit(f"atrous: --data-root is required for dataset '{name}'")
        ds = getattr(data, name)(root, split=split)
    elif name == "digit_scenes":
        from .data.digit_scenes import digit_scenes

        opts = dict(options or {})
        n_test = opts.pop("n_test_scenes", None)
        if split == "test":
            opts["n_scenes"] = n_test
        if isinstance(opts.get("n_digits"), list):
            opts["n_digits"] = tuple(opts["n_digits"])
        if isinstance(opts.get("digit_size"), list):
            opts["digit_size"] = tuple(opts["digit_size"])
        try:
            ds = digit_scenes(split, **opts)
        except (TypeError, ValueError) as e:
            raise SystemExit(f"atrous: {e}") from None
        return ds.images, ds.masks
    else:
        raise SystemExit(f"atrous: unknown dataset '{name}' (choose {', '.join(DATASETS)})")
    return ds.images, ds.labels


def task_of(cfg):
    """'segment' or 'classify' for a run config (older configs have no 'task')."""
    return cfg.get("task") or ("segment" if cfg.get("dataset") in SEGMENTATION_DATASETS else "classify")


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

    kwargs = dict(cfg.get("model_kwargs", {}))
    if task_of(cfg) == "segment":
        from .models import segmentation

        if cfg.get("dataset") == "digit_scenes":
            from .data.digit_scenes import NUM_CLASSES

            kwargs.setdefault("num_classes", NUM_CLASSES)
        try:
            return segmentation.get_segmentation_model(cfg["model"], **kwargs)
        except (TypeError, ValueError) as e:
            raise SystemExit(f"atrous: segmentation model '{cfg['model']}': {e}") from None
    return models.get_model(cfg["model"], **kwargs)


def make_trainer(cfg, progress=True):
    """Model, data, optimizer and schedule for a run config; returns (trainer, test data)."""
    from . import data, manual_seed
    from .train import Trainer

    manual_seed(cfg["seed"])
    task = task_of(cfg)
    opts = cfg.get("dataset_kwargs")
    x_train, y_train = load_dataset(cfg["dataset"], "train", cfg.get("data_root"), opts)
    x_test, y_test = load_dataset(cfg["dataset"], "test", cfg.get("data_root"), opts)
    model = build_model(cfg)
    # Optional augmentation: random shifts by up to crop_padding pixels (zero padding).
    transform = None
    if cfg.get("crop_padding") and task == "classify":
        transform = data.transforms.RandomCrop(x_train.shape[-2:], padding=int(cfg["crop_padding"]))
    train_loader = data.DataLoader(data.TensorDataset(x_train, y_train), batch_size=cfg["batch_size"],
                                   shuffle=True, seed=cfg["seed"], transform=transform)
    # Segmentation keeps C x H x W logits per image: smaller evaluation batches.
    test_loader = data.DataLoader(data.TensorDataset(x_test, y_test), batch_size=256 if task == "classify" else 32)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler, step_on = build_scheduler(cfg, optimizer, len(train_loader))
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      scheduler_step=step_on, out_dir=cfg["out"], progress=progress,
                      checkpoint_every=cfg.get("checkpoint_every"), run_info=cfg, task=task)
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


def run_paths(spec):
    """(run folder, checkpoint file) for a run folder or a checkpoint file inside one."""
    from .train import CHECKPOINT_NAME

    if os.path.isdir(spec):
        return spec, os.path.join(spec, CHECKPOINT_NAME)
    return os.path.dirname(spec) or ".", spec


def load_run(spec, build=None):
    """(model with the run's trained weights, run config, run folder) for a run folder or a
    checkpoint file. ``build(cfg)`` makes the model (default ``build_model``); it may refuse
    a run by raising SystemExit before any weights are read."""
    from .io.checkpoint import load

    run_dir, path = run_paths(spec)
    cfg = read_config(run_dir)
    model = (build or build_model)(cfg)
    if not os.path.exists(path):
        raise SystemExit(f"atrous: {path} not found; train the run first")
    model.load_state_dict(load(path)["model"])
    return model, cfg, run_dir


# ----- commands ----------------------------------------------------------------------------
def cmd_models(args):
    from . import models

    print(f"{'model':<24}{'parameters':>16}")
    for name in models.list_models():
        model = models.get_model(name)
        count = sum(p.size for p in model.parameters())
        print(f"{name:<24}{count:>16,}")
    if args.segmentation:
        from .models import segmentation

        print(f"\n{'segmentation model':<24}{'parameters':>16}  (21 classes)")
        for name in sorted(segmentation.SEGMENTATION_MODELS):
            model = segmentation.get_segmentation_model(name, num_classes=21)
            count = sum(p.size for p in model.parameters())
            print(f"{name:<24}{count:>16,}")
    return 0


def cmd_train(args):
    from .train import CHECKPOINT_NAME

    if args.resume:
        cfg = read_config(args.out)
        cfg["epochs"] = args.epochs if args.epochs is not None else cfg["epochs"]
    else:
        task = args.task or ("segment" if args.dataset in SEGMENTATION_DATASETS else "classify")
        if task == "segment" and args.dataset not in SEGMENTATION_DATASETS:
            raise SystemExit(f"atrous: --task segment needs a segmentation dataset "
                             f"({', '.join(SEGMENTATION_DATASETS)}), got '{args.dataset}'")
        if task == "classify" and args.dataset in SEGMENTATION_DATASETS:
            raise SystemExit(f"atrous: dataset '{args.dataset}' has per-pixel labels; use --task segment")
        model = args.model or ("deeplab_tiny" if task == "segment" else "digits_cnn")
        cfg = {
            "model": model, "model_kwargs": json.loads(args.model_kwargs),
            "dataset": args.dataset, "data_root": args.data_root, "epochs": args.epochs or 10,
            "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
            "momentum": args.momentum, "weight_decay": args.weight_decay, "schedule": args.schedule,
            "seed": args.seed, "out": args.out, "checkpoint_every": args.checkpoint_every,
            "crop_padding": args.crop_padding,
        }
        if task == "segment":
            cfg["task"] = task
            cfg["dataset_kwargs"] = {"size": args.scene_size, "n_scenes": args.scenes,
                                     "n_test_scenes": args.test_scenes, "seed": args.data_seed}
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
    last = history[-1] if history else None
    if last is not None and last.val_miou is not None:
        print(f"test mIoU {last.val_miou:.4f}  pixel accuracy {100 * last.val_acc:.2f}%  "
              f"(run folder: {cfg['out']})")
    elif last is not None and last.val_acc is not None:
        print(f"test accuracy {100 * last.val_acc:.2f}%  (run folder: {cfg['out']})")
    return 0


def cmd_evaluate(args):
    from . import data
    from .train import evaluate, evaluate_scores

    model, cfg, _ = load_run(args.checkpoint)
    x, y = load_dataset(cfg["dataset"], args.split, cfg.get("data_root"), cfg.get("dataset_kwargs"))
    if task_of(cfg) == "segment":
        s = evaluate_scores(model, data.DataLoader(data.TensorDataset(x, y), batch_size=32), task="segment")
        print(f"{cfg['model']} on {cfg['dataset']}/{args.split}: loss {s.loss:.4f}  mIoU {s.miou:.4f}  "
              f"pixel accuracy {100 * s.acc:.2f}%  ({len(y)} images)")
        names = _class_names(cfg, len(s.iou))
        print("IoU per class: " + "  ".join(f"{n} {v:.3f}" for n, v in zip(names, s.iou)))
        return 0
    loss, acc = evaluate(model, data.DataLoader(data.TensorDataset(x, y), batch_size=256))
    print(f"{cfg['model']} on {cfg['dataset']}/{args.split}: loss {loss:.4f}  accuracy {100 * acc:.2f}%  ({len(y)} images)")
    return 0


def _class_names(cfg, n):
    if cfg.get("dataset") == "digit_scenes":
        from .data.digit_scenes import CLASSES

        if len(CLASSES) == n:
            return CLASSES
    return [str(i) for i in range(n)]


def build_parser():
    p = argparse.ArgumentParser(prog="atrous", description="Convolutional networks in NumPy.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list the model zoo with parameter counts")
    m.add_argument("--segmentation", action="store_true", help="also list the segmentation models")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a model and write checkpoints, metrics and curves",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--model", default=None,
                   help="zoo name (see 'atrous models'; default digits_cnn, or deeplab_tiny for segment)")
    t.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for the model")
    t.add_argument("--task", default=None, choices=["classify", "segment"],
                   help="default: segment for digit_scenes, else classify")
    t.add_argument("--dataset", default="digits", choices=list(DATASETS))
    t.add_argument("--data-root", default=None, help="folder with MNIST IDX or CIFAR-10 binary files")
    t.add_argument("--scene-size", type=int, default=64, help="digit_scenes: canvas side in pixels")
    t.add_argument("--scenes", type=int, default=2000, help="digit_scenes: training scenes")
    t.add_argument("--test-scenes", type=int, default=400, help="digit_scenes: held-out scenes")
    t.add_argument("--data-seed", type=int, default=0, help="digit_scenes: seed of the scenes")
    t.add_argument("--epochs", type=int, default=None, help="total epochs (default 10; with --resume, the run's)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--schedule", default="cosine", choices=["none", "cosine", "step", "onecycle"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--crop-padding", type=int, default=0,
                   help="augment: random shifts of up to N pixels (classification)")
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
