"""Peak resident memory: resnet18 inference (batch 8, 224x224) and the CIFAR-style ResNet
training step (batch 32, 32x32; ``train_step.py``'s ``cifar_resnet``), atrous vs PyTorch.

Each measurement runs in a fresh subprocess that imports one library only, builds the model,
runs the workload a few times and reports its high-water mark (``VmHWM`` from
``/proc/self/status``; ``ru_maxrss`` where /proc is missing) and the modules it ended up
importing. An *idle* subprocess that imports exactly those modules (and does nothing else) gives
the baseline, so a dependency loaded lazily on first use (numba, say) counts as an import, not as
workload. The table shows the raw peaks, the baselines, and the peak minus the baseline (what
the workload itself costs: weights, activations, gradients, workspace), with the ratio
atrous / torch of both. 2 threads each.

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


def idle_child(modules):
    """Import ``modules`` (dotted names, as a workload child reported them) and print peak bytes."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a private submodule that cannot be imported on its own
            pass
    print(peak_bytes())


def imported_modules():
    return ",".join(sorted(n for n in sys.modules if not n.startswith("_") and n != "memory"))


def child(workload, lib):
    """Run one workload with one library; print peak bytes and the modules it imported."""
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
    print(imported_modules())


def _run(args, stdin=None):
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=os.path.join(HERE, ".."))
    if r.returncode != 0:
        raise RuntimeError(f"memory.py {' '.join(args)[:80]} failed:\n{r.stderr.strip()[-2000:]}")
    return r.stdout.split()


def measure(workload, lib):
    """(peak bytes of the workload, peak bytes of an idle process with the same imports)."""
    out = _run(["--child", workload, lib])
    peak, modules = int(out[-2]), out[-1]
    idle = int(_run(["--idle"], stdin=modules)[-1])  # stdin: torch's list is too long for argv
    return peak, idle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "LIB"), help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)  # module list on stdin
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    if args.idle:
        idle_child(sys.stdin.read().split(","))
        return
    if args.child:
        child(*args.child)
        return
    from common import header

    header("Peak resident memory (VmHWM), each in a fresh subprocess, MiB")
    mib = 1 / 2**20
    print(f"{'workload':<42}{'atrous':>7}{'torch':>7}{'ratio':>6} |{'idle: atrous':>13}{'torch':>6} |"
          f"{'peak-idle: atrous':>18}{'torch':>6}{'ratio':>6}")
    torch_runs, net_ratios = {}, []
    for w in args.workloads.split(","):
        a, ai = measure(w, "atrous")
        tw = w[: -len("_fused")] if w.endswith("_fused") else w  # PyTorch runs the unfused model
        if tw not in torch_runs:
            torch_runs[tw] = measure(tw, "torch")
        t, ti = torch_runs[tw]
        an, tn = a - ai, t - ti
        print(f"{WORKLOADS[w]:<42}{a * mib:>7.0f}{t * mib:>7.0f}{a / t:>6.2f} |{ai * mib:>13.0f}{ti * mib:>6.0f} |"
              f"{an * mib:>18.0f}{tn * mib:>6.0f}{an / tn:>6.2f}")
        net_ratios.append(f"{w} {an / tn:.2f}")
    print("peak minus idle, atrous / torch: " + ", ".join(net_ratios))


if __name__ == "__main__":
    main()
