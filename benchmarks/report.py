"""Run the benchmark scripts and write their tables to ``docs/benchmarks.md``.

Each script runs as a subprocess from the repository root with 2 threads (OMP/OpenBLAS/MKL
variables set to 2, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed so OpenBLAS picks its own
kernel) and its output is captured verbatim. The page opens with the date, the machine, the
library versions and the BLAS kernel, then one section per script with the command that
reproduces it. Scripts that are not present (``kernels_numba``, ``conv_accuracy``) are skipped;
a script that fails is reported with its error and the others still run. ``--quick`` passes each
script options for a shorter run (fewer layers, repeats and points) and says so on the page.

    .venv/bin/python benchmarks/report.py            # full run (tens of minutes)
    .venv/bin/python benchmarks/report.py --quick    # a few minutes
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from common import THREADS  # noqa: E402

# (script, full options, quick options, what it shows)
SCRIPTS = [
    ("conv_layers", [], ["--layers", "resnet_56,resnet_7,bottleneck_1x1,depthwise,cifar_small", "--no-memory"],
     "conv2d layer set, forward and forward+backward, ratio to PyTorch's best layout"),
    ("conv_layers", ["--layers", "cifar_16,cifar_32,cifar_64", "--no-memory"],
     ["--layers", "cifar_16,cifar_64", "--no-memory"],
     "the 3x3 layers of the CIFAR ResNet of train_step (batch 32), which the heuristic sends to other algorithms"),
    ("fft_conv", ["--layers", "k3_c64_56,k5_c64_56,k7_c3_112,k7_c16_112,k7_c64_56,k11_c64_56,k15_c32_112", "--repeat", "3"],
     ["--layers", "k3_c64_56,k7_c64_56,k11_c64_56", "--repeat", "3"],
     "FFT convolution vs the GEMM engine and PyTorch, stride-1 layers with large kernels"),
    ("conv_accuracy", [], [], "numerical error of each convolution algorithm vs a float64 reference"),
    ("kernels_numba", [], [], "compiled (numba) kernels vs the NumPy path"),
    ("train_step", [], [], "one SGD training step: CIFAR-style ResNet (batch 32) and resnet18 (batch 8)"),
    ("inference", [], ["--batches", "8", "--repeat", "3"], "resnet18 inference vs onnxruntime and PyTorch"),
    ("fusion", [], ["--repeat", "3"], "resnet18 inference with and without model.fuse()"),
    ("pooling", [], [], "pooling forward/backward"),
    ("batch_norm", [], [], "batch normalisation forward/backward"),
    ("memory", [], ["--workloads", "resnet18_infer,cifar_train"], "peak resident memory, separate processes"),
    ("scaling", [], ["--quick", "--repeat", "3"], "cost growth of one 3x3 layer vs batch and image size"),
]


def bench_env():
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(THREADS)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    return env


def machine_info():
    """Lines describing the CPU, memory, OS and library versions, measured in a clean subprocess
    (so the BLAS kernel is the one the benchmarks get, not one chosen under this process's env)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    probe = (
        "import sys; sys.path.insert(0, 'benchmarks'); from common import limit_threads; import numpy;"
        "print('BLAS: ' + limit_threads()); print('numpy ' + numpy.__version__)\n"
        "for name in ('atrous', 'torch', 'onnxruntime', 'numba', 'scipy'):\n"
        "    try:\n"
        "        m = __import__(name); print(name + ' ' + getattr(m, '__version__', '?'))\n"
        "    except ImportError:\n"
        "        print(name + ' not installed')\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=bench_env(), capture_output=True, text=True)
    libs = r.stdout.strip().splitlines() if r.returncode == 0 else [f"(probe failed: {r.stderr.strip()[-300:]})"]
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load average unknown"
    return [
        f"CPU: {cpu}, {os.cpu_count()} logical cores{mem}; {THREADS} threads per library",
        f"OS: {platform.platform()}; Python {platform.python_version()}",
        *libs,
        f"{load} at the start (other work on the machine inflates and scatters timings)",
    ]


def run_script(name, options, timeout):
    cmd = [sys.executable, os.path.join("benchmarks", name + ".py"), *options]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, text=True, timeout=timeout)
        out, ok = r.stdout, r.returncode == 0
        if not ok:
            out += f"\n[exit status {r.returncode}]\n" + "\n".join(r.stderr.strip().splitlines()[-15:])
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out, ok = partial + f"\n[stopped after {timeout} s]", False
    return out.rstrip(), ok, time.perf_counter() - t0


HEADLINE_MARKS = ("geometric mean", "speed-up", "peak minus idle", "gflop/s spread")


def headlines(name, output):
    """The summary lines a reader looks for first (geometric means, fusion speed-up...)."""
    return [f"{name}: {ln.strip()}" for ln in output.splitlines()
            if any(ln.strip().lower().startswith(m) for m in HEADLINE_MARKS)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs of every script")
    parser.add_argument("--only", default="", help="comma-separated script names (default: all present)")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per script")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    todo = [s for s in SCRIPTS if os.path.exists(os.path.join(HERE, s[0] + ".py")) and (not only or s[0] in only)]
    missing = [s[0] for s in SCRIPTS if not os.path.exists(os.path.join(HERE, s[0] + ".py"))]

    started = datetime.datetime.now().astimezone()
    info = machine_info()
    sections, summary = [], []
    for name, full, quick, what in todo:
        options = quick if args.quick else full
        print(f"running {name} {' '.join(options)}", flush=True)
        out, ok, secs = run_script(name, options, args.timeout)
        print(f"  {'done' if ok else 'FAILED'} in {secs:.0f} s", flush=True)
        command = " ".join(["env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE", ".venv/bin/python",
                            f"benchmarks/{name}.py", *options])
        summary += headlines(name, out)
        extra = ""
        if name == "scaling" and ok:
            extra = "\n![conv time vs batch and image size](images/scaling.png)\n"
        sections.append(
            f"## {name}\n\n{what}. {'' if ok else '**The run failed; output below.** '}"
            f"({secs:.0f} s)\n\n```\n{command}\n```\n\n```\n{out}\n```\n{extra}"
        )

    mode = "quick run (`--quick`: fewer layers, repeats and points)" if args.quick else "full run"
    lines = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/report.py`; do not edit by hand. Every number is a median of repeated "
        f"runs with {THREADS} threads on each side (NumPy's BLAS, PyTorch, onnxruntime), "
        "PyTorch and atrous in one process unless a section says otherwise; ratios are atrous / other.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M %Z}; {mode}",
        *[f"- {ln}" for ln in info],
        "",
        "Reproduce everything with `.venv/bin/python benchmarks/report.py"
        + (" --quick" if args.quick else "") + "`, or one script with the command in its section.",
    ]
    if missing:
        lines += ["", "Not run (script not present): " + ", ".join(f"`{m}`" for m in missing) + "."]
    if summary:
        lines += ["", "## Summary lines", "", "```", *summary, "```"]
    text = "\n".join(lines) + "\n\n" + "\n".join(sections)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.output)  # atomic: an interrupted run keeps the previous page
    print(f"wrote {os.path.relpath(args.output)}")


if __name__ == "__main__":
    main()
