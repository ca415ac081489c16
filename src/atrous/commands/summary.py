"""``atrous summary MODEL --input 3x224x224``: the per-layer table of ``atrous.analysis.summary``.

MODEL is a zoo name (``atrous models`` lists them), a run folder / checkpoint written by
``atrous train`` (its ``config.json`` names the model; the checkpoint's weights are loaded), or
an ``.onnx`` file (imported with ``atrous.onnx.load``; the input shape defaults to the graph's).

    atrous summary resnet18 --input 3x224x224
    atrous summary alexnet_original --input 3x227x227 --markdown
    atrous summary runs/digits --csv > digits.csv
"""
from __future__ import annotations

import argparse
import json
import os

# One example's shape for each dataset ``atrous train`` knows, and for zoo models whose
# natural input is not 3x224x224; used when --input is not given.
DATASET_INPUTS = {"digits": "1x8x8", "mnist": "1x28x28", "cifar10": "3x32x32", "digit_scenes": "1x64x64"}
MODEL_INPUTS = {"alexnet_original": "3x227x227", "lenet5": "1x32x32", "digits_cnn": "1x8x8",
                "wrn_16_4": "3x32x32", "wrn_28_10": "3x32x32"}


def register(subparsers):
    p = subparsers.add_parser(
        "summary",
        help="per-layer shapes, parameters, MACs, receptive fields and weight sharing",
        description="Trace MODEL on a zero input and print one row per layer call: output shape, "
                    "parameters, MACs, receptive field (size, jump, first centre; H x W) and, "
                    "for convolutions, the parameters a locally connected layer would need.",
    )
    p.add_argument("model", metavar="MODEL", help="zoo name, run folder, checkpoint file or .onnx file")
    p.add_argument("--input", default=None, metavar="CxHxW",
                   help="one example's shape, e.g. 3x224x224 (default: the run's dataset, or "
                        "the model's usual input)")
    p.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for a zoo model")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print a Markdown table")
    fmt.add_argument("--csv", action="store_true", help="print CSV (one row per layer, then 'total')")
    p.set_defaults(func=run)


def _load(spec, model_kwargs):
    """(model, default input shape or None) for a zoo name, a training run or an ONNX file."""
    from .. import models

    if spec.lower().endswith(".onnx") and os.path.isfile(spec):
        from ..onnx import OnnxImportError, load as load_onnx

        try:
            model = load_onnx(spec)
        except OnnxImportError as e:
            raise SystemExit(f"atrous summary: {e}") from None
        graph = model._graph
        if len(graph["inputs"]) != 1:
            raise SystemExit(f"atrous summary: {spec} has {len(graph['inputs'])} graph inputs; "
                             "summary runs models of one input")
        _, dims = graph["input_specs"][graph["inputs"][0]]
        known = dims is not None and len(dims) == 4 and all(d is not None for d in dims[1:])
        return model, "x".join(str(d) for d in dims[1:]) if known else None
    if os.path.exists(spec):
        from ..cli import build_model, read_config, run_paths
        from ..io import load

        run_dir, checkpoint = run_paths(spec)
        cfg = read_config(run_dir)
        model = build_model(cfg)
        if os.path.exists(checkpoint):
            state = load(checkpoint)
            if not isinstance(state, dict) or "model" not in state:
                raise SystemExit(f"atrous summary: {checkpoint} holds no 'model' state")
            try:
                model.load_state_dict(state["model"])
            except (RuntimeError, ValueError) as e:
                raise SystemExit(f"atrous summary: {checkpoint} does not fit {cfg['model']}: {e}") from None
        return model, DATASET_INPUTS.get(cfg.get("dataset"))
    try:
        kwargs = json.loads(model_kwargs)
    except json.JSONDecodeError as e:
        raise SystemExit(f"atrous summary: --model-kwargs is not valid JSON: {e}") from None
    try:
        model = models.get_model(spec, **kwargs)
    except ValueError as e:
        raise SystemExit(f"atrous summary: {e} (or give a run folder written by 'atrous train')") from None
    return model, MODEL_INPUTS.get(spec, "3x224x224")


def run(args: argparse.Namespace) -> int:
    from ..analysis import summary

    model, default_input = _load(args.model, args.model_kwargs)
    shape = args.input or default_input
    if shape is None:
        raise SystemExit(f"atrous summary: give --input CxHxW for {args.model}")
    try:
        result = summary(model, shape)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"atrous summary: {args.model} on input {shape}: {e}") from None
    if args.markdown:
        print(result.to_markdown(), end="")
    elif args.csv:
        print(result.to_csv(), end="")
    else:
        print(result)
    return 0
