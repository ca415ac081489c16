"""Peak resident memory: resnet18 inference (batch 8, 224x224) and the CIFAR-style ResNet
training step (batch 32, 32x32; ``train_step.py``'s ``cifar_resnet``), atrous vs PyTorch.

Each measurement runs in a fresh subprocess that imports one library only, builds the model,
runs the workload a few times and reports its high-water mark (``VmHWM`` from
``/proc/self/status``; ``ru_maxrss`` where /proc is missing). An *idle* subprocess with the same
imports (and nothing else) gives the baseline: the table shows the raw peak, the baseline, and
the peak minus the baseline (what the workload itself costs: weights, activations, gradients,
workspace), with the ratio atrous / torch of both. 2 threads each.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/memory.py
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import THREADS  # noqa: E402  (sets the thread variables before NumPy loads)

WORKLOADS = {
    "resnet18_infer": "resnet18 inference, batch 8, 224x224",
    "resnet18_infer_fused": "resnet18 inference after fuse(), batch 8",
    "cifar_train": "CIFAR ResNet training step, batch 32",
}


def peak_bytes():
    """This process's resident high-water mark in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def child(workload, lib, idle):
    """Run one workload with one library (or only its imports when ``idle``); print peak bytes."""
    import numpy as np

    from threadpoolctl import threadpool_limits

    threadpool_limits(THREADS)
    if lib == "torch":
        import torch

        torch.set_num_threads(THREADS)
        nn, relu = torch.nn, torch.relu
    else:
        import atrous
        import atrous.functional as F
        from atrous import models, nn, optim

        relu = F.relu
    from train_step import cifar_resnet

    if idle:
        print(peak_bytes())
        return
    rng = np.random.default_rng(0)
    if workload.startswith("resnet18"):
        x = rng.standard_normal((8, 3, 224, 224)).astype(np.float32)
        if lib == "torch":
            sys.path.insert(0, os.path.join(HERE, "..", "tests"))
            from torch_reference_models import resnet18

            model = resnet18().eval()
            with torch.inference_mode():
                for _ in range(3):
                    model(torch.from_numpy(x))
        else:
            model = models.resnet18().eval()
            if workload.endswith("fused"):
                model.fuse()
            with atrous.no_grad():
                for _ in range(3):
                    model(atrous.Tensor(x))
    else:
        x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 10, 32)
        model = cifar_resnet(nn, relu)
        if lib == "torch":
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            for _ in range(3):
                loss = torch.nn.functional.cross_entropy(model(tx), ty)
                opt.zero_grad()
                loss.backward()
                opt.step()
        else:
            opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for _ in range(3):
                loss = F.cross_entropy(model(atrous.Tensor(x)), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    print(peak_bytes())


def measure(workload, lib, idle=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", workload, lib] + (["--idle"] if idle else [])
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.join(HERE, ".."))
    if r.returncode != 0:
        raise RuntimeError(f"{workload}/{lib} failed:\n{r.stderr.strip()[-2000:]}")
    return int(r.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "LIB"), help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    if args.child:
        child(*args.child, idle=args.idle)
        return
    from common import header

    header("Peak resident memory (VmHWM), each in a fresh subprocess, MiB")
    mib = 1 / 2**20
    idle = {lib: measure("idle", lib, idle=True) for lib in ("atrous", "torch")}
    print(f"idle baseline (imports only): atrous {idle['atrous'] * mib:.0f} MiB, torch {idle['torch'] * mib:.0f} MiB")
    print(f"\n{'workload':<44}{'atrous':>8}{'torch':>8}{'ratio':>7} |{'atrous-idle':>12}{'torch-idle':>11}{'ratio':>7}")
    torch_raw, net_ratios = {}, []
    for w in args.workloads.split(","):
        a = measure(w, "atrous")
        if w.endswith("_fused"):  # PyTorch's side is the unfused model: the same workload to it
            t = torch_raw.get(w[: -len("_fused")]) or measure(w[: -len("_fused")], "torch")
        else:
            t = torch_raw[w] = measure(w, "torch")
        an, tn = a - idle["atrous"], t - idle["torch"]
        print(f"{WORKLOADS[w]:<44}{a * mib:>8.0f}{t * mib:>8.0f}{a / t:>7.2f} |"
              f"{an * mib:>12.0f}{tn * mib:>11.0f}{an / tn:>7.2f}")
        net_ratios.append(f"{w} {an / tn:.2f}")
    print("peak minus idle, atrous / torch: " + ", ".join(net_ratios))


if __name__ == "__main__":
    main()
