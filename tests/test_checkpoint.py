import io
import zipfile

import numpy as np
import pytest

from atrous.io import load, save


def test_round_trip_preserves_structure_types_and_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    obj = {
        "model": {"conv.weight": rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
                  "bn.num_batches_tracked": np.array(7, dtype=np.int64)},
        "optimizer": {"state": {0: {"momentum_buffer": np.ones(3, np.float64)}, 5: {"step": 3.0}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 5]}]},
        "epoch": 4,
        "rng": {"state": {"state": 2**100 + 3, "inc": 17}},
        "name": "digits_cnn",
        "nothing": None,
        "inf": float("inf"),
        "scalar": np.float32(1.5),
    }
    path = tmp_path / "ck.npz"
    save(obj, path)
    back = load(path)
    assert back["model"]["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(back["model"]["conv.weight"], obj["model"]["conv.weight"])
    assert back["model"]["bn.num_batches_tracked"].dtype == np.int64
    assert set(back["optimizer"]["state"]) == {0, 5}  # integer keys survive
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["rng"]["state"]["state"] == 2**100 + 3
    assert back["epoch"] == 4 and back["name"] == "digits_cnn" and back["nothing"] is None
    assert back["inf"] == float("inf")
    assert isinstance(back["scalar"], np.float32) and back["scalar"] == 1.5


def test_file_is_a_plain_npz_that_loads_without_pickle(tmp_path):
    path = tmp_path / "ck.npz"
    save({"w": np.arange(3.0)}, path)
    with np.load(path, allow_pickle=False) as z:
        assert "__meta__" in z.files


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array('{"format": "atrous-checkpoint", "version": 1, "root": {"__array__": "a0"}}'),
             a0=np.array([{"x": 1}], dtype=object))
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="pickle"):
        load(path)


def test_objects_that_need_pickle_are_rejected_on_save(tmp_path):
    with pytest.raises(TypeError, match="cannot save"):
        save({"f": lambda: 0}, tmp_path / "x.npz")


def test_failed_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "ck.npz"
    save({"v": np.array([1.0])}, path)
    with pytest.raises(TypeError):
        save({"v": np.array([2.0]), "bad": object()}, path)
    np.testing.assert_array_equal(load(path)["v"], [1.0])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temp file left behind
    assert zipfile.is_zipfile(path)
