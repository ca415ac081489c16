"""``atrous export --model resnet18 out.onnx``: write a zoo model as an ONNX file.

The weights are the model's fresh initialisation unless ``--checkpoint`` (a run folder or
checkpoint written by ``atrous train``; its config names the model) or ``--weights`` (a
state dict as ``.safetensors``, a ``torch.save`` ``.pt``/``.pth`` read without PyTorch, or an
atrous ``.npz`` checkpoint) supplies them. ``--input`` is C x H x W (or N x C x H x W); the
default depends on the model (3x224x224 for ImageNet networks, 3x227x227 for
alexnet_original, 3x32x32 for the CIFAR WRNs, 1x32x32 for lenet5, 1x8x8 for digits_cnn).

    atrous export --model resnet18 resnet18.onnx
    atrous export --checkpoint runs/digits digits.onnx
    atrous export --model resnet50 --weights resnet50.pth --input 3x320x320 r50.onnx
"""
from __future__ import annotations

import json
import os

DEFAULT_INPUTS = {
    "alexnet_original": (3, 227, 227),
    "digits_cnn": (1, 8, 8),
    "lenet5": (1, 32, 32),
    "wrn_16_4": (3, 32, 32),
    "wrn_28_10": (3, 32, 32),
}


def register(subparsers):
    p = subparsers.add_parser(
        "export",
        help="write a zoo model (optionally with trained weights) as an ONNX file",
        description="Trace a zoo model in eval mode and write it as ONNX (needs the onnx package).",
    )
    p.add_argument("output", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--model", default=None, help="zoo name (see 'atrous models'); default: the checkpoint's")
    p.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for the model")
    p.add_argument("--input", default=None, help="input shape CxHxW or NxCxHxW (default: per model)")
    p.add_argument("--batch", type=int, default=1, help="batch size when --input gives CxHxW")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--checkpoint", default=None, help="run folder or checkpoint of 'atrous train'")
    p.add_argument("--weights", default=None, help="state dict: .safetensors, .pt/.pth (torch.save) or .npz")
    p.set_defaults(func=cmd_export)


def _parse_shape(text, batch):
    try:
        dims = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise SystemExit(f"atrous export: --input must look like 3x224x224, got {text!r}") from None
    if len(dims) == 3:
        dims = (batch,) + dims
    if len(dims) != 4 or min(dims) < 1:
        raise SystemExit(f"atrous export: --input must be CxHxW or NxCxHxW positive sizes, got {text!r}")
    return dims


def load_weights(path):
    """A state dict from .safetensors, a torch.save file, or an atrous .npz checkpoint."""
    from ..io.checkpoint import load
    from ..io.safetensors_io import load_safetensors
    from ..io.torch_pickle import load_torch_state_dict

    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        return load_safetensors(path)
    if ext in (".pt", ".pth", ".bin", ".ckpt"):
        state = load_torch_state_dict(path)
    elif ext == ".npz":
        state = load(path)
    else:
        raise SystemExit(f"atrous export: --weights must be .safetensors, .pt/.pth or .npz, got {path!r}")
    for key in ("model", "state_dict"):  # common checkpoint wrappers
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def cmd_export(args):
    from .. import models
    from ..cli import read_config, run_paths
    from ..io.checkpoint import load
    from ..onnx.exporter import export

    name, kwargs, state = args.model, json.loads(args.model_kwargs), None
    if args.checkpoint:
        run_dir, checkpoint = run_paths(args.checkpoint)
        cfg = read_config(run_dir)
        if name is not None and name != cfg["model"]:
            raise SystemExit(f"atrous export: --model {name} but the checkpoint holds {cfg['model']}")
        name = cfg["model"]
        kwargs = {**cfg.get("model_kwargs", {}), **kwargs}
        state = load(checkpoint)["model"]
    if name is None:
        raise SystemExit("atrous export: give --model NAME or --checkpoint RUN")
    try:
        model = models.get_model(name, **kwargs)
    except ValueError as e:
        raise SystemExit(f"atrous export: {e}") from None
    if args.weights:
        state = load_weights(args.weights)
    if state is not None:
        model.load_state_dict(state)
    shape = _parse_shape(args.input, args.batch) if args.input else (args.batch,) + DEFAULT_INPUTS.get(name, (3, 224, 224))
    proto = export(model, args.output, shape, opset=args.opset)
    size = os.path.getsize(args.output)
    count = sum(p.size for p in model.parameters())
    print(f"wrote {args.output}: {name}, input {shape}, opset {args.opset}, {len(proto.graph.node)} nodes, "
          f"{count:,} parameters, {size / 2**20:.1f} MiB")
    return 0
