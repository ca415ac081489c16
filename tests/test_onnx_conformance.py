"""ONNX backend node conformance tests, run through ``atrous.onnx.load``.

The installed ``onnx`` wheel ships the node tests as their generators
(``onnx.backend.test.case.node``: each builds the model and its reference inputs/outputs, the
same data the ``data/node/test_*`` folders are written from); the ``pytorch-converted`` and
``pytorch-operator`` folders ship as files (``model.onnx`` + ``test_data_set_*/*.pb``). Every
case whose operator is in the importer's list is run and compared to the reference outputs. A
case the importer refuses at load time (an op or attribute outside the supported set) is a
skip whose reason is the load-time error message, never a pass. ``*_expanded`` cases (the
function-body decompositions into other operators) are left out: they test those operators.

    python tests/test_onnx_conformance.py        # the passed/failed/skipped table per operator
"""
from __future__ import annotations

import collections
import glob
import os
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")

from atrous.onnx import OnnxImportError, load  # noqa: E402

OPERATORS = (
    "Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization LRN "
    "Relu LeakyRelu PRelu Elu Sigmoid Tanh Clip HardSigmoid HardSwish Softmax LogSoftmax Gemm MatMul "
    "Add Sub Mul Div Concat Flatten Reshape Transpose Squeeze Unsqueeze Pad Resize Upsample Dropout "
    "Identity Constant Shape Gather ReduceMean Slice"
).split()

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def _node_cases():
    """(name, operator, model, inputs, outputs) for every generated node test of our operators."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    out = []
    for c in cases:
        if "_expanded" in c.name:
            continue
        op = c.model.graph.node[0].op_type
        if op in OPERATORS:
            (inputs, outputs), = c.data_sets
            out.append((c.name, op, c.model, list(inputs), list(outputs)))
    return out


def _read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return onnx.numpy_helper.to_array(t)


def _folder_cases():
    """Cases stored as files whose graphs use only operators from the list."""
    out = []
    for folder in sorted(glob.glob(os.path.join(DATA, "pytorch-*", "test_*"))):
        model = onnx.load(os.path.join(folder, "model.onnx"))
        ops = {n.op_type for n in model.graph.node}
        if not ops or not ops <= set(OPERATORS):
            continue
        main = sorted(ops - {"Constant", "Identity", "Shape", "Gather", "Unsqueeze", "Concat"} or ops)[0]
        for ds in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
            ins = [_read_pb(p) for p in sorted(glob.glob(os.path.join(ds, "input_*.pb")))]
            outs = [_read_pb(p) for p in sorted(glob.glob(os.path.join(ds, "output_*.pb")))]
            out.append((os.path.basename(folder), main, model, ins, outs))
    return out


CASES = _node_cases() + _folder_cases()


# Cases whose stored reference is less precise than 1e-4 (with the reason).
RTOL = {
    "test_averagepool_2d_ceil_last_window_starts_on_pad": 1e-3,  # reference rounded to 4 digits
}


def _is_random_dropout(name):
    return name.startswith("test_training_dropout") and "zero_ratio" not in name


def run_case(name, model, inputs, expected):
    """'pass', ('skip', reason) or raises AssertionError with the mismatch."""
    try:
        m = load(model)
    except OnnxImportError as e:
        return "skip", str(e)
    outs = m(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert len(outs) >= len(expected), f"{name}: {len(outs)} outputs, expected {len(expected)}"
    if _is_random_dropout(name):
        # A seeded random mask cannot be reproduced; check it is a dropout of the input instead.
        x, y = inputs[0], np.asarray(outs[0])
        ratio = float(inputs[1]) if len(inputs) > 1 else 0.5
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / (1 - ratio), rtol=1e-5)
        assert 0 < kept.mean() < 1
        if len(outs) > 1:
            np.testing.assert_array_equal(np.asarray(outs[1]), kept | (x == 0) & np.asarray(outs[1]))
        return "pass"
    for got, want in zip(outs, expected):
        got = np.asarray(got)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, expected {want.dtype}"
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=RTOL.get(name, 1e-4), atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)
    return "pass"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conformance(case):
    name, op, model, inputs, expected = case
    result = run_case(name, model, inputs, expected)
    if result != "pass":
        pytest.skip(f"{op}: {result[1]}")


def test_every_operator_has_cases():
    have = {c[1] for c in CASES}
    assert set(OPERATORS) <= have, f"no conformance case for {sorted(set(OPERATORS) - have)}"


def table():
    """Passed/failed/skipped per operator, with the skip and failure reasons."""
    counts = collections.defaultdict(collections.Counter)
    notes = collections.defaultdict(list)
    for name, op, model, inputs, expected in CASES:
        try:
            r = run_case(name, model, inputs, expected)
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            counts[op]["failed"] += 1
            notes[op].append(f"FAIL {name}: {str(e).splitlines()[0][:150]}")
            continue
        if r == "pass":
            counts[op]["passed"] += 1
        else:
            counts[op]["skipped"] += 1
            notes[op].append(f"skip {name}: {r[1][:200]}")
    lines = [f"| operator | passed | failed | skipped |", "|---|---|---|---|"]
    for op in OPERATORS:
        c = counts[op]
        lines.append(f"| {op} | {c['passed']} | {c['failed']} | {c['skipped']} |")
    total = sum((counts[o] for o in OPERATORS), collections.Counter())
    lines.append(f"| **total** | {total['passed']} | {total['failed']} | {total['skipped']} |")
    lines.append("")
    for op in OPERATORS:
        lines += [f"- {n}" for n in notes[op]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    print(table())
