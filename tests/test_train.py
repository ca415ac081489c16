"""Training: exact resume (mid-epoch, after Ctrl-C, after SIGKILL), metrics and checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn provides the digits data (pip install -e '.[dev]')")

from atrous.io import load  # noqa: E402

TRAIN_ARGS = ["--model", "digits_cnn", "--dataset", "digits", "--epochs", "2", "--batch-size", "64",
              "--lr", "0.05", "--seed", "3", "--quiet"]


def _weights(run_dir):
    return load(os.path.join(run_dir, "checkpoint.npz"))["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _atrous(*args, timeout=300):
    """Run the CLI in a fresh process, so every run sees the same BLAS and thread settings."""
    return subprocess.run([sys.executable, "-m", "atrous", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    done = _atrous("train", *TRAIN_ARGS, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def test_run_folder_has_metrics_config_and_checkpoint(uninterrupted):
    lines = open(os.path.join(uninterrupted, "metrics.jsonl")).read().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["val_acc"] <= 1.0 and r["train_loss"] > 0 for r in rows)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert json.load(open(os.path.join(uninterrupted, "config.json")))["model"] == "digits_cnn"


def test_ctrl_c_mid_epoch_then_resume_is_bit_exact(uninterrupted, tmp_path):
    """SIGINT (Ctrl-C) mid-epoch stops at a batch boundary after writing a checkpoint; the
    resumed run ends with the uninterrupted run's weights and per-epoch losses, bit for bit."""
    out = str(tmp_path / "run")
    ckpt = os.path.join(out, "checkpoint.npz")
    proc = subprocess.Popen([sys.executable, "-m", "atrous", "train", *TRAIN_ARGS, "--out", out,
                             "--checkpoint-every", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted: checkpoint written" in stdout
    state = load(ckpt)
    assert state["epoch"] * 23 + state["batches_done"] < 46  # it really stopped early
    done = _atrous("train", "--out", out, "--resume", "--quiet")
    assert done.returncode == 0, done.stderr
    _assert_same_weights(_weights(out), _weights(uninterrupted))
    full = open(os.path.join(uninterrupted, "metrics.jsonl")).read().splitlines()
    resumed = open(os.path.join(out, "metrics.jsonl")).read().splitlines()
    assert len(full) == len(resumed) == 2
    for a, b in zip(full, resumed):  # the same losses, to the last bit (timings aside)
        ra, rb = json.loads(a), json.loads(b)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert ra[key] == rb[key], key


def test_sigkill_while_writing_checkpoints_never_corrupts_them(uninterrupted, tmp_path):
    """Kill the run at random moments while it checkpoints every batch; resume; same weights."""
    out = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "atrous", "train", *TRAIN_ARGS, "--out", out, "--checkpoint-every", "1"]
    ckpt = os.path.join(out, "checkpoint.npz")
    rng = np.random.default_rng(0)
    for attempt in range(3):
        # The first start trains from scratch; later ones resume what the killed one saved.
        args = cmd if attempt == 0 else [sys.executable, "-m", "atrous", "train", "--out", out, "--resume", "--quiet"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.05, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load(ckpt)  # always a complete, loadable checkpoint
        assert "model" in state and state["epoch"] <= 2
        leftovers = [p for p in os.listdir(out) if p.endswith(".tmp")]
        for p in leftovers:  # a killed writer may leave its temp file; never the real one
            os.unlink(os.path.join(out, p))
    done = _atrous("train", "--out", out, "--resume", "--quiet")
    assert done.returncode == 0, done.stderr
    _assert_same_weights(_weights(out), _weights(uninterrupted))
