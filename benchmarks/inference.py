"""Inference latency of resnet18 on 224x224: atrous vs onnxruntime vs PyTorch, same process.

One set of weights: atrous's resnet18 (BatchNorm statistics randomised so they matter) is
exported with ``atrous.onnx.export`` for onnxruntime (one static graph per batch size) and
copied into the torchvision-keyed PyTorch twin from ``tests/torch_reference_models.py``.
Every side runs 2 threads (onnxruntime: intra_op_num_threads=2, inter_op_num_threads=1);
the outputs are checked to agree before timing. Medians over ``--repeat`` runs.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/inference.py
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from common import THREADS, header, median_ms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def build_models():
    import torch
    import torch_reference_models as ref

    from atrous import models, nn

    model = models.resnet18()
    rng = np.random.default_rng(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data[...] = 0.5 + rng.random(c)
            m.bias.data[...] = 0.2 * rng.standard_normal(c)
            m.running_mean.data[...] = 0.2 * rng.standard_normal(c)
            m.running_var.data[...] = 0.5 + rng.random(c)
    model.eval()
    tmodel = ref.resnet18()
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return model, tmodel.eval()


def ort_session(model, batch, folder):
    import onnxruntime as ort

    from atrous.onnx.exporter import export

    path = os.path.join(folder, f"resnet18_b{batch}.onnx")
    export(model, path, (batch, 3, 224, 224))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    header("resnet18 inference, 224x224, eval mode")
    import onnxruntime as ort
    import torch

    import atrous

    print(f"onnxruntime {ort.__version__}")
    model, tmodel = build_models()
    from atrous import models

    fused = models.resnet18()  # fuse() works in place: fuse a twin with the same weights
    fused.load_state_dict(model.state_dict())
    fused.eval().fuse()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            sess = ort_session(model, batch, folder)
            xt = torch.from_numpy(x)

            def run_atrous():
                with atrous.no_grad():
                    return model(atrous.Tensor(x)).data

            def run_fused():  # BatchNorm folded into the convolutions, ReLU as their epilogue
                with atrous.no_grad():
                    return fused(atrous.Tensor(x)).data

            def run_ort():
                return sess.run(None, {"input": x})[0]

            def run_torch():
                with torch.inference_mode():
                    return tmodel(xt).numpy()

            ya, yf, yo, yt = run_atrous(), run_fused(), run_ort(), run_torch()
            scale = float(np.abs(yt).max())
            err_a, err_f, err_o = (np.abs(y - yt).max() / scale for y in (ya, yf, yo))
            print(f"batch {batch}: max |diff| / max |logit| vs PyTorch: atrous {err_a:.1e}, fused {err_f:.1e}, "
                  f"onnxruntime {err_o:.1e}")
            ta = median_ms(run_atrous, repeat=args.repeat)
            tf = median_ms(run_fused, repeat=args.repeat)
            to = median_ms(run_ort, repeat=args.repeat)
            tt = median_ms(run_torch, repeat=args.repeat)
            rows.append((batch, ta, tf, to, tt))
    print("\natrous: the model as built; fused: after model.fuse() (BatchNorm folded, ReLU fused), the\n"
          "graph rewrites onnxruntime applies to its model too")
    print(f"{'batch':>5} {'atrous ms':>10} {'fused ms':>9} {'ort ms':>9} {'torch ms':>9} {'atrous/torch':>13} "
          f"{'atrous/ort':>11} {'fused/ort':>10}")
    for batch, ta, tf, to, tt in rows:
        print(f"{batch:>5} {ta:>10.1f} {tf:>9.1f} {to:>9.1f} {tt:>9.1f} {ta / tt:>13.2f} {ta / to:>11.2f} "
              f"{tf / to:>10.2f}")


if __name__ == "__main__":
    main()
