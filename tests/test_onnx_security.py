"""Model files are data: unsafe or malformed ONNX files are refused at load, before any read
outside the model's folder and before any allocation their declared shapes would need."""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")
from onnx import TensorProto, helper  # noqa: E402

from atrous.onnx import OnnxImportError, load  # noqa: E402


def _model(nodes, inits, opset=17, inputs=None, outputs=("y",)):
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    g = helper.make_graph(nodes, "g", inputs,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _external(name, location, dims=(2, 3), offset=0, length=None):
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _write(tmp_path, model, name="m.onnx"):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _add_model(init):
    return _model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [init])


# ----- external data ---------------------------------------------------------------------------
def test_external_data_inside_the_folder_loads(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = _write(tmp_path, _add_model(_external("w", "weights.bin", offset=8, length=24)))
    (path.parent / "weights.bin").write_bytes(b"\0" * 8 + w.tobytes())
    m = load(path)
    np.testing.assert_array_equal(np.asarray(m(np.ones((2, 3), np.float32))), w + 1)


@pytest.mark.parametrize("location", ["../secret", "sub/../../secret", "/etc/passwd", "./../model/../secret"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    path = _write(tmp_path, _add_model(_external("w", location)))
    (tmp_path / "secret").write_bytes(b"\x01" * 24)  # exists, so only the path check can refuse it
    with pytest.raises(OnnxImportError, match=r"initializer 'w': external data location .* (outside|absolute)"):
        load(path)


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    path = _write(tmp_path, _add_model(_external("w", "link.bin")))
    (tmp_path / "secret").write_bytes(b"\x01" * 24)
    try:
        os.symlink(tmp_path / "secret", path.parent / "link.bin")
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")
    with pytest.raises(OnnxImportError, match="outside the model's folder"):
        load(path)


def test_external_data_length_and_file_size_are_checked(tmp_path):
    path = _write(tmp_path, _add_model(_external("w", "w.bin", length=12)))
    (path.parent / "w.bin").write_bytes(b"\0" * 24)
    with pytest.raises(OnnxImportError, match="length 12 does not match the declared shape"):
        load(path)
    path = _write(tmp_path, _add_model(_external("w", "w.bin", offset=16)))
    with pytest.raises(OnnxImportError, match=r"needs bytes 16\.\.40 of 'w\.bin' but the file has 24 bytes"):
        load(path)


def test_external_data_from_bytes_needs_a_folder():
    with pytest.raises(OnnxImportError, match="given as bytes; pass base_dir="):
        load(_add_model(_external("w", "w.bin")).SerializeToString())


# ----- declared sizes --------------------------------------------------------------------------
def _fails_without_allocating(model_or_path, match):
    tracemalloc.start()
    try:
        with pytest.raises(OnnxImportError, match=match):
            load(model_or_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20, f"peak allocation {peak} bytes while refusing the model"


def test_huge_declared_initializer_fails_fast():
    t = TensorProto()
    t.name, t.data_type = "w", TensorProto.FLOAT
    t.dims.extend([10**6, 10**6])  # 10^12 elements (4 TB) declared, no data carried
    _fails_without_allocating(_add_model(t), r"initializer 'w': declared shape \[1000000, 1000000\] has 1e\+12 "
                                             r"elements \(3\.6 TiB\), over the limit")


def test_declared_shape_must_match_embedded_data():
    t = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], np.zeros(6, np.float32).tobytes(), raw=True)
    t.dims[0] = 2000  # claims 6000 elements, holds 6
    _fails_without_allocating(_add_model(t), r"declared shape \[2000, 3\] needs 6000 elements .* holds 6")


def test_huge_external_tensor_is_refused_before_reading(tmp_path):
    path = _write(tmp_path, _add_model(_external("w", "w.bin", dims=(10**6, 10**6))))
    (path.parent / "w.bin").write_bytes(b"\0" * 24)
    _fails_without_allocating(path, "over the limit")


def test_huge_constant_attribute_fails_fast():
    t = TensorProto()
    t.name, t.data_type = "c", TensorProto.FLOAT
    t.dims.extend([10**6, 10**6])
    node = helper.make_node("Constant", [], ["c"], name="const", value=t)
    m = _model([node, helper.make_node("Add", ["x", "c"], ["y"], name="add")], [])
    _fails_without_allocating(m, r"node 'const' \(Constant, opset 17\) attribute value: declared shape")


def test_negative_dimension_is_refused():
    t = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], np.zeros(6, np.float32))
    t.dims[0] = -2
    with pytest.raises(OnnxImportError, match="negative dimension"):
        load(_add_model(t))


# ----- unsupported graph content fails at load, naming node / op / opset -------------------------
def test_unsupported_op_fails_at_load_naming_node_op_opset():
    m = _model([helper.make_node("Einsum", ["x", "x"], ["y"], name="my_einsum", equation="ij,ij->ij")], [])
    with pytest.raises(OnnxImportError, match=r"node 'my_einsum' \(Einsum, opset 17\): operator Einsum is not "
                                              r"supported; supported: Add, AveragePool"):
        load(m)


def test_unsupported_attribute_value_fails_at_load():
    m = _model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="rs", mode="linear", antialias=1)],
               [helper.make_tensor("s", TensorProto.FLOAT, [2], [2.0, 2.0])], opset=19)
    with pytest.raises(OnnxImportError, match=r"node 'rs' \(Resize, opset 19\): antialias=1 is not supported"):
        load(m)
    m = _model([helper.make_node("Pad", ["x", "p"], ["y"], name="pd", mode="mirror")],
               [helper.make_tensor("p", TensorProto.INT64, [4], [0, 1, 0, 1])], opset=13)
    with pytest.raises(OnnxImportError, match=r"node 'pd' \(Pad, opset 13\): attribute mode='mirror' is not "
                                              r"supported \(supported: constant, reflect, edge, wrap\)"):
        load(m)


def test_unknown_attribute_fails_at_load():
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="r", fancy=3)], [])
    with pytest.raises(OnnxImportError, match=r"node 'r' \(Relu, opset 17\): attribute\(s\) fancy not supported"):
        load(m)


def test_three_d_convolution_fails_at_load():
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 2, 2, 2], np.zeros(8, np.float32))
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4, 4])]
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="c3")], [w], inputs=x)
    with pytest.raises(OnnxImportError, match=r"node 'c3' \(Conv, opset 17\): 3-D windows are not supported"):
        load(m)


def test_foreign_domain_and_opset_are_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.microsoft")], [])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(OnnxImportError, match=r"node 'r' \(Relu, opset 17\): operator domain 'com.microsoft'"):
        load(m)
    with pytest.raises(OnnxImportError, match=r"ai.onnx opset 5 is not supported \(supported: 6-28\)"):
        load(_model([helper.make_node("Relu", ["x"], ["y"])], [], opset=5))


def test_dangling_input_and_garbage_are_refused():
    m = _model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")], [])
    with pytest.raises(OnnxImportError, match=r"node 'add' \(Add\): no node, initializer or graph input "
                                              r"produces 'nowhere'"):
        load(m)
    with pytest.raises(OnnxImportError, match="not a valid ONNX model file"):
        load(b"\xff\xff\xff garbage")
