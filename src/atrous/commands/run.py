"""``atrous run model.onnx --input x.npy|image.png --output y.npy``: run an ONNX model.

The model is imported with ``atrous.onnx.load`` (all validation happens there, before anything
runs). The input is a ``.npy`` array (read with ``allow_pickle=False``; a missing batch axis is
added when the graph wants one more dimension) or an image (PNG/JPEG/..., needs Pillow),
turned into a float32 (1, C, H, W) batch in [0, 1], resized to the graph's declared H x W if it
has one, then normalised with ``--mean``/``--std`` (``--imagenet`` for torchvision's).
Outputs are written with ``np.save`` (one graph output: that array; several: ``--output`` gets
the first and ``NAME.npy`` files beside it the rest); ``--top K`` prints the K best classes.

    atrous run resnet18.onnx --input cat.png --imagenet --top 5
    atrous run fcn.onnx --input batch.npy --output scores.npy
"""
from __future__ import annotations

import os

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def register(subparsers):
    p = subparsers.add_parser(
        "run",
        help="run an ONNX model on a .npy array or an image",
        description="Import MODEL (an .onnx file) with atrous.onnx.load and run it on one input.",
    )
    p.add_argument("model", metavar="MODEL", help="path of an .onnx file")
    p.add_argument("--input", required=True, metavar="FILE", help="a .npy array or an image file")
    p.add_argument("--output", default=None, metavar="FILE.npy", help="where to save the output array")
    p.add_argument("--mean", default=None, help="per-channel mean for images, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", default=None, help="per-channel std for images, e.g. 0.229,0.224,0.225")
    p.add_argument("--imagenet", action="store_true", help="use torchvision's ImageNet mean and std")
    p.add_argument("--top", type=int, default=0, metavar="K",
                   help="print the K largest scores of a (1, classes) output")
    p.set_defaults(func=run)


def _floats(text, name):
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"atrous run: {name} must be comma-separated numbers, got {text!r}") from None


def _read_image(path, size, channels):
    import numpy as np

    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("atrous run: reading images needs Pillow (pip install pillow); "
                         "or pass a .npy array") from None
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return a[None]


def _load_input(args, model):
    import numpy as np

    name = model.input_names[0]
    dtype, dims = model._graph["input_specs"][name]
    if args.input.lower().endswith(".npy"):
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SystemExit(f"atrous run: cannot read {args.input}: {e}") from None
        if dims is not None and x.ndim == len(dims) - 1:
            x = x[None]
        if dtype is not None and x.dtype != dtype and np.issubdtype(x.dtype, np.floating) \
                and np.issubdtype(dtype, np.floating):
            x = x.astype(dtype)
        return x
    if not args.input.lower().endswith(IMAGE_SUFFIXES):
        raise SystemExit(f"atrous run: --input must be a .npy array or an image, got {args.input}")
    channels = dims[1] if dims is not None and len(dims) == 4 and dims[1] is not None else 3
    size = tuple(dims[2:]) if dims is not None and len(dims) == 4 and None not in dims[2:] else None
    x = _read_image(args.input, size, channels)
    mean = IMAGENET_MEAN if args.imagenet else (_floats(args.mean, "--mean") if args.mean else None)
    std = IMAGENET_STD if args.imagenet else (_floats(args.std, "--std") if args.std else None)
    if mean is not None:
        x = x - np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    if std is not None:
        x = x / np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return x.astype(dtype if dtype is not None else np.float32)


def _save(path, array):
    import numpy as np

    from ..io.atomic import atomic_write

    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def run(args):
    import numpy as np

    from .. import no_grad
    from ..onnx import OnnxImportError, OnnxRuntimeError, load

    if not os.path.isfile(args.model):
        raise SystemExit(f"atrous run: no such file {args.model}")
    try:
        model = load(args.model)
    except OnnxImportError as e:
        raise SystemExit(f"atrous run: cannot import {args.model}: {e}") from None
    if len(model.input_names) != 1:
        raise SystemExit(f"atrous run: the model takes {len(model.input_names)} inputs "
                         f"({', '.join(model.input_names)}); this command feeds exactly one")
    x = _load_input(args, model)
    try:
        with no_grad():
            out = model(x)
    except (OnnxRuntimeError, TypeError, ValueError) as e:
        raise SystemExit(f"atrous run: {e}") from None
    outs = out if isinstance(out, tuple) else (out,)
    for name, y in zip(model.output_names, outs):
        print(f"{name}: shape {tuple(y.shape)} dtype {y.dtype}")
    if args.top:
        y = np.asarray(outs[0]).reshape(-1)
        best = np.argsort(-y, kind="stable")[: args.top]
        for rank, i in enumerate(best, 1):
            print(f"  {rank}. class {i}: {y[i]:.6g}")
    if args.output:
        _save(args.output, outs[0])
        stem = os.path.splitext(args.output)[0]
        for name, y in zip(model.output_names[1:], outs[1:]):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            _save(f"{stem}.{safe}.npy", y)
        print(f"saved {args.output}")
    return 0
