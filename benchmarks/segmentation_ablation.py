"""The receptive-field story, measured: the tiny DeepLab with and without dilation and ASPP.

Every arm trains on the same digit scenes (train-split digits), with the same seed, batch
order, optimizer and number of steps, and is scored on the same held-out scenes (test-split
digits). Arms differ in which ResNet stages trade their stride for dilation (output stride
4, 8 or 32, always the same parameters) and in the head (ASPP or a plain stack of 3x3
convolutions of about the same size). The table gives mIoU, pixel accuracy, parameters,
output stride, the receptive field of the backbone's final features and of the logits
(``atrous.analysis``) and the training time. The first arm also writes an overlay picture.

    python benchmarks/segmentation_ablation.py --threads 1      # the full table (docs numbers)
    python benchmarks/segmentation_ablation.py --quick          # a smoke run (a minute)
    python benchmarks/segmentation_ablation.py --arms 0,2 --save-json a.json   # arms apart...
    python benchmarks/segmentation_ablation.py --from-json a.json b.json --write-docs  # ...joined

Timings depend on the machine's load; the script prints the BLAS and thread settings. On a
machine busier than its cores, use ``--threads 1``: a multi-threaded BLAS that cannot get
its cores spin-waits, and these small GEMMs then run many times slower.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (sets the thread limits before NumPy loads)

from atrous import nn  # noqa: E402

# (label, switches). "dilate": which of layers 2-4 trade their stride for dilation; the
# parameters never depend on it. At output stride 4 deeplabv3_tiny doubles the ASPP rates so
# that they span the same number of input pixels (2 x 8 = 4 x 4).
ARMS = [
    ("OS 4: dilated layers 2-4, ASPP", dict(dilate=(True, True, True), aspp=True)),
    ("OS 8: dilated layers 3-4, ASPP", dict(dilate=(False, True, True), aspp=True)),
    ("OS 32: no dilation, ASPP", dict(dilate=(False, False, False), aspp=True)),
    ("OS 4: dilated layers 2-4, plain head", dict(dilate=(True, True, True), aspp=False)),
    ("OS 8: dilated layers 3-4, plain head", dict(dilate=(False, True, True), aspp=False)),
    ("OS 32: no dilation, plain head", dict(dilate=(False, False, False), aspp=False)),
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "segmentation.md")
IMAGE = os.path.join(ROOT, "docs", "images", "segmentation_overlay.png")
TABLE_START, TABLE_END = "<!-- ablation table: start -->", "<!-- ablation table: end -->"


class _Part(nn.Module):
    """The backbone's final features ('features') or the classifier's logits before the
    upsampling ('logits') of a segmentation model, for their receptive field and stride."""

    def __init__(self, model, part):
        super().__init__()
        self.model, self.part = model, part

    def forward(self, x):
        features = self.model.backbone(x)["out"]
        return features if self.part == "features" else self.model.classifier(features)


def geometry(model, size):
    """Parameters, output stride and receptive fields (features, logits) at size x size."""
    from atrous.analysis import receptive_field, summary

    s = summary(model, (1, size, size))
    feats = receptive_field(_Part(model, "features"), (1, size, size))
    logits = receptive_field(_Part(model, "logits"), (1, size, size))
    return {
        "params": s.totals.params,
        "output_stride": feats.jump[0],
        "feature_map": f"{feats.output_hw[0]}x{feats.output_hw[1]}",
        "rf_features": feats.size[0],
        "rf_logits": logits.size[0],
        "rf_logits_exact": logits.exact,
    }


def build_arm(dilate, aspp, width=16, num_classes=11):
    """The tiny DeepLab with layers 2-4 dilated as ``dilate`` says and an ASPP or plain head."""
    from atrous.models import segmentation as S

    output_stride = {tuple(v): k for k, v in S.TINY_DILATION.items()}[tuple(dilate)]
    return S.deeplabv3_tiny(num_classes, aspp=aspp, width=width, output_stride=output_stride)


def train_arm(kwargs, cfg, train, test):
    from atrous import data, manual_seed
    from atrous.cli import build_optimizer, build_scheduler
    from atrous.train import Trainer, evaluate_scores

    manual_seed(cfg["seed"])
    model = build_arm(**kwargs, width=cfg["width"])
    loader = data.DataLoader(data.TensorDataset(train.images, train.masks), batch_size=cfg["batch_size"],
                             shuffle=True, seed=cfg["seed"])
    val = data.DataLoader(data.TensorDataset(test.images, test.masks), batch_size=32)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler, step_on = build_scheduler(cfg, optimizer, len(loader))
    trainer = Trainer(model, optimizer, loader, None, scheduler=scheduler, scheduler_step=step_on,
                      progress=False, task="segment")
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(1, cfg["epochs"] + 1):
        trainer.fit(epoch)
        h = trainer.history[-1]
        line = f"    epoch {epoch}: loss {h.train_loss:.4f}  train mIoU {h.train_miou:.3f}"
        if cfg["eval_every_epoch"]:
            s = evaluate_scores(model, val, task="segment")
            line += f"  held-out mIoU {s.miou:.3f}"
        print(f"{line}  {time.perf_counter() - t0:.0f} s", flush=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if cfg["eval_every_epoch"]:  # the evaluations are not training time
        seconds = sum(h.seconds for h in trainer.history)
    scores = evaluate_scores(model, val, task="segment")
    return model, scores, seconds, cpu


def markdown_table(results, cfg):
    lines = ["| arm | dilated stages | head | mIoU | pixel acc. | params | output stride | feature map "
             "| RF of features | RF of logits | train time (wall / CPU) |",
             "|---|:-:|:-:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        stages = ",".join(str(k + 2) for k, d in enumerate(r["dilate"]) if d) or "none"
        rf_logits = f"{round(r['rf_logits'])} px" + ("" if r["rf_logits_exact"] else " (bound)")
        if r["aspp"]:
            rf_logits += " + whole image (pooling)"
        lines.append(
            f"| {r['arm']} | {stages} | {'ASPP' if r['aspp'] else 'plain'} "
            f"| {r['miou']:.3f} | {100 * r['acc']:.2f}% | {r['params']:,} | {r['output_stride']} "
            f"| {r['feature_map']} | {r['rf_features']} px | {rf_logits} "
            f"| {r['seconds'] / 60:.1f} / {r.get('cpu', float('nan')) / 60:.1f} min |")
    lines.append("")
    lines.append(f"Budget per arm: {cfg['epochs']} epochs of {cfg['scenes']} training scenes "
                 f"({cfg['size']}x{cfg['size']}, batch {cfg['batch_size']}, {cfg['optimizer']} "
                 f"lr {cfg['lr']}, {cfg['schedule']} schedule, seed {cfg['seed']}, width {cfg['width']}); "
                 f"held-out: {cfg['test_scenes']} scenes of test-split digits. Receptive fields in "
                 f"input pixels (height = width). Train time: wall clock and process CPU time of the "
                 f"training, {cfg['threads']} BLAS thread(s), {cfg['machine']}.")
    return "\n".join(lines)


def write_docs(table):
    text = open(DOC).read() if os.path.exists(DOC) else ""
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        text = f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}"
    else:
        text += f"\n{TABLE_START}\n{table}\n{TABLE_END}\n"
    with open(DOC, "w") as f:
        f.write(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and 1 epoch: checks the script runs")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--scenes", type=int, default=2000)
    p.add_argument("--test-scenes", type=int, default=400)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16, help="TinyResNet width (channels w/2w/4w/4w)")
    p.add_argument("--arms", default=",".join(str(i) for i in range(len(ARMS))),
                   help="which arms to run (indices into ARMS)")
    p.add_argument("--threads", type=int, default=common.THREADS,
                   help="BLAS threads (1 avoids spin-waiting when the machine is oversubscribed)")
    p.add_argument("--eval-every-epoch", action="store_true", help="print held-out mIoU after each epoch")
    p.add_argument("--save-json", default=None, help="also write the results (rows and settings) here")
    p.add_argument("--from-json", nargs="+", default=None,
                   help="no training: build the table from results saved by --save-json (arms run apart)")
    p.add_argument("--write-docs", action="store_true", help=f"write the table into {os.path.relpath(DOC, ROOT)}")
    p.add_argument("--image", default=IMAGE, help="overlay PNG of the first arm on a held-out scene")
    args = p.parse_args(argv)

    if args.from_json:
        results, cfg = [], None
        for path in args.from_json:
            with open(path) as f:
                saved = json.load(f)
            results += saved["results"]
            cfg = cfg or saved["settings"]
        order = [label for label, _ in ARMS]
        results.sort(key=lambda r: order.index(r["arm"]))
        table = markdown_table(results, cfg)
        print(table)
        if args.write_docs:
            write_docs(table)
            print(f"\nwritten to {DOC}")
        return results
    common.THREADS = args.threads
    blas = common.limit_threads()
    machine = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start"
    print(f"BLAS: {blas}; {machine}")
    from atrous.data.digit_scenes import BACKGROUND, CLASSES, digit_scenes

    cfg = {"epochs": args.epochs, "scenes": args.scenes, "test_scenes": args.test_scenes,
           "size": args.size, "batch_size": args.batch_size, "optimizer": "adam", "lr": args.lr,
           "momentum": 0.0, "weight_decay": 0.0, "schedule": "cosine", "seed": 0,
           "width": args.width, "threads": args.threads, "machine": machine,
           "eval_every_epoch": args.eval_every_epoch}
    if args.quick:
        cfg.update(epochs=1, scenes=128, test_scenes=64)
    # Geometry first (cheap, needs no training), and every import before the long runs.
    from atrous.commands.segment import predict
    from atrous.viz.segmentation import plot_segmentation

    indices = [int(i) for i in args.arms.split(",")]
    shapes = {i: geometry(build_arm(**ARMS[i][1], width=cfg["width"]), cfg["size"]) for i in indices}
    train = digit_scenes("train", size=cfg["size"], n_scenes=cfg["scenes"])
    test = digit_scenes("test", size=cfg["size"], n_scenes=cfg["test_scenes"])
    results = []
    for index in indices:
        label, kwargs = ARMS[index]
        print(f"{label}: training {cfg['epochs']} epochs", flush=True)
        model, scores, seconds, cpu = train_arm(kwargs, cfg, train, test)
        g = shapes[index]
        r = dict(arm=label, **kwargs, miou=scores.miou, acc=scores.acc, seconds=seconds, cpu=cpu, **g,
                 iou=[round(float(v), 4) for v in scores.iou])
        results.append(r)
        print(f"  mIoU {r['miou']:.4f}  pixel accuracy {100 * r['acc']:.2f}%  params {r['params']:,}  "
              f"output stride {r['output_stride']}  RF features {r['rf_features']}  RF logits "
              f"{r['rf_logits']:.0f}  training {seconds:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        print("  IoU per class: " + " ".join(f"{n}:{v:.3f}" for n, v in zip(CLASSES, scores.iou)), flush=True)
        if index == 0 and args.image:
            os.makedirs(os.path.dirname(args.image), exist_ok=True)
            model.eval()
            scene = digit_scenes("test", size=cfg["size"], n_scenes=1, seed=3)
            pred = predict(model, scene.images[0, 0])
            plot_segmentation(scene.images[0, 0], pred, args.image, target=scene.masks[0],
                              classes=CLASSES, background=BACKGROUND,
                              title=f"tiny DeepLab ({label}) on a held-out scene")
            print(f"  overlay: {args.image}")
    if args.save_json:
        with open(args.save_json, "w") as f:
            json.dump({"settings": cfg, "results": results}, f, indent=1)
    table = markdown_table(results, cfg)
    print()
    print(table)
    if args.write_docs and not args.quick:
        write_docs(table)
        print(f"\nwritten to {DOC}")
    return results


if __name__ == "__main__":
    main()
