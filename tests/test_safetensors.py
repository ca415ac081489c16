"""safetensors read/write, implemented without the package: round trips, both directions against
the ``safetensors`` package (the reference implementation), and malformed files."""
import json
import struct

import numpy as np
import pytest

import atrous
from atrous import models
from atrous.io.safetensors_io import load_safetensors, save_safetensors

st = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed (pip install -e '.[dev]')")


def _tensors(rng):
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        "half": rng.standard_normal((2, 5)).astype(np.float16),
        "double": rng.standard_normal(3),
        "mask": rng.random((3, 2)) > 0.5,
        "bytes": np.arange(7, dtype=np.uint8),
        "i8": np.array([-128, 127], dtype=np.int8),
        "i16": np.array([-3, 4], dtype=np.int16),
        "u16": np.array([1, 65535], dtype=np.uint16),
        "i32": np.array([[1, -2]], dtype=np.int32),
        "u32": np.array([7], dtype=np.uint32),
        "u64": np.array([2**63], dtype=np.uint64),
        "empty": np.zeros((0, 3), np.float32),
        "transposed": rng.standard_normal((3, 4)).astype(np.float32).T,  # non-contiguous input
        "big_endian": np.arange(4, dtype=">f4"),
    }


def _assert_same(got, want):
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].shape == v.shape, k
        assert got[k].dtype == v.dtype.newbyteorder("="), k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_round_trip(tmp_path, rng):
    tensors = _tensors(rng)
    path = tmp_path / "w.safetensors"
    save_safetensors(tensors, path, metadata={"format": "np", "note": "ü"})
    got, meta = load_safetensors(path, with_metadata=True)
    _assert_same(got, tensors)
    assert meta == {"format": "np", "note": "ü"}
    assert all(a.flags.writeable and a.dtype.isnative for a in got.values())
    assert list(tmp_path.iterdir()) == [path]  # atomic write left no temporary file


def test_written_by_us_read_by_safetensors(tmp_path, rng):
    tensors = _tensors(rng)
    path = tmp_path / "ours.safetensors"
    save_safetensors(tensors, path, metadata={"k": "v"})
    _assert_same(st.load_file(str(path)), tensors)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"k": "v"}
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert (8 + n) % 8 == 0  # data region aligned, as the reference writer does


def test_written_by_safetensors_read_by_us(tmp_path, rng):
    tensors = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")) for k, v in _tensors(rng).items()}
    path = tmp_path / "theirs.safetensors"
    st.save_file(tensors, str(path), metadata={"a": "b"})
    got, meta = load_safetensors(path, with_metadata=True)
    _assert_same(got, tensors)
    assert meta == {"a": "b"}


def test_bf16_reads_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact in bfloat16
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    got = load_safetensors(path)["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_model_state_dict_round_trip(tmp_path):
    model = models.resnet18(num_classes=10)
    path = tmp_path / "resnet18.safetensors"
    save_safetensors(model.state_dict(), path)
    other = models.resnet18(num_classes=10)
    other.load_state_dict(load_safetensors(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    model.eval(), other.eval()
    with atrous.no_grad():
        np.testing.assert_array_equal(model(x).data, other(x).data)


def test_save_errors(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_safetensors({"o": np.array(["a"], dtype=object)}, tmp_path / "x")
    with pytest.raises(ValueError, match="__metadata__"):
        save_safetensors({"__metadata__": np.zeros(1)}, tmp_path / "x")
    with pytest.raises(TypeError, match="metadata"):
        save_safetensors({"a": np.zeros(1)}, tmp_path / "x", metadata={"a": 1})
    with pytest.raises(TypeError, match="dict"):
        save_safetensors([np.zeros(1)], tmp_path / "x")


# ----- malformed files --------------------------------------------------------------------------
def _file(tmp_path, header, data=b"", length=None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def test_truncated_files(tmp_path, rng):
    path = tmp_path / "w.safetensors"
    save_safetensors({"w": np.ones((100,), np.float32)}, path)
    raw = path.read_bytes()
    for cut in (4, 20, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="too short|header declares|truncated|tensors cover"):
            load_safetensors(path)


def test_oversized_header_fails_before_reading(tmp_path):
    with pytest.raises(ValueError, match="header declares 1000000000000 bytes"):
        load_safetensors(_file(tmp_path, {}, length=10**12))
    with pytest.raises(ValueError, match="limit 100000000"):
        load_safetensors(_file(tmp_path, b" " * 16, length=2 * 10**8))


@pytest.mark.parametrize("header,data,match", [
    ({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}, b"\0" * 16,
     "ends at byte 4000000000000 of a data region of 16"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "invalid data_offsets"),
    ({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype 'F99'"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "invalid shape"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "exactly dtype, shape and data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "starts at byte 4"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, "cover 4 bytes of a data region of 8"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__ must map strings"),
    ([1, 2], b"", "JSON object"),
    (b"\xff\xfe{", b"", "not valid UTF-8 JSON"),
])
def test_malformed_headers(tmp_path, header, data, match):
    with pytest.raises(ValueError, match=match):
        load_safetensors(_file(tmp_path, header, data))


def test_reference_rejects_what_we_reject(tmp_path):
    # Cross-check one rejection with the reference reader, so our strictness is the format's.
    path = _file(tmp_path, {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(Exception):
        st.load_file(str(path))
    with pytest.raises(ValueError):
        load_safetensors(path)
