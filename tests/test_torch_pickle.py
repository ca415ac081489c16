"""The torch-free ``torch.save`` reader: values against ``torch.load``, weights into the zoo,
and the security contract (no code runs, sizes are checked before allocation).

Crafted files are pickled with the real torch rebuild functions as globals (so the records are
exactly what torch writes) but with sizes, strides, keys and byte orders of the test's choice,
then zipped in torch's layout.
"""
import io
import os
import pickle
import subprocess
import sys
import tracemalloc
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from atrous import models, no_grad, Tensor
from atrous.io.torch_pickle import UnsafeCheckpointError, load_torch_state_dict


def _to_numpy(torch, t):
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _assert_same(torch, got, want):
    assert list(got) == list(want)
    for k, v in want.items():
        ref = _to_numpy(torch, v)
        assert got[k].dtype == ref.dtype, k
        assert got[k].shape == ref.shape, k
        np.testing.assert_array_equal(got[k], ref, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.owndata or got[k].base is not None


def _write_zip(path, pkl, storages, prefix="archive", byteorder="little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")


def _crafted(torch, tensors, storage_numel, dtype="FloatStorage"):
    """A data.pkl of {name: (offset, size, stride)} tensors over one storage '0'."""

    class Storage:
        pass

    storage = Storage()

    class Record:
        def __init__(self, offset, size, stride):
            self.args = (offset, size, stride)

        def __reduce__(self):
            offset, size, stride = self.args
            return torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False, OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", getattr(torch, dtype), "0", "cpu", storage_numel)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(OrderedDict((k, Record(*v)) for k, v in tensors.items()))
    return buf.getvalue()


# ----- values ----------------------------------------------------------------------------------
def test_resnet18_state_dict_matches_torch_load(torch, tmp_path):
    import torch_reference_models as ref

    model = ref.randomize_batchnorm(ref.resnet18(num_classes=10))
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    got = load_torch_state_dict(path)
    _assert_same(torch, got, torch.load(path))
    assert got["bn1.num_batches_tracked"].shape == () and got["bn1.num_batches_tracked"].dtype == np.int64


def test_torchvision_keys_load_into_zoo_and_logits_match(torch, tmp_path):
    import torch_reference_models as ref

    torch.manual_seed(0)
    tmodel = ref.randomize_batchnorm(ref.resnet18(num_classes=10)).eval()
    path = tmp_path / "weights.pt"
    torch.save(tmodel.state_dict(), path)
    model = models.resnet18(num_classes=10)
    model.load_state_dict(load_torch_state_dict(path))
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with no_grad():
        got = model(Tensor(x)).data
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_odd_tensors(torch, tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = OrderedDict(
        transposed=base.t(),                                   # non-contiguous (strides 1, 6)
        view_offset=base[1:3, 2:5],                            # shares base's storage, offset 8
        strided=base[::2, ::3],
        base=base,
        half=torch.randn(3, 2).half(),
        bf16=torch.randn(5).bfloat16(),
        int64=torch.arange(-3, 3),
        int32=torch.tensor([1, -2], dtype=torch.int32),
        int8=torch.tensor([-5, 7], dtype=torch.int8),
        uint8=torch.tensor([0, 255], dtype=torch.uint8),
        bool=torch.tensor([[True, False], [False, True]]),
        float64=torch.randn(2, 2, dtype=torch.float64),
        complex=torch.randn(3, dtype=torch.complex64),
        uint16=torch.tensor([1, 65535], dtype=torch.int32).to(torch.uint16),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 4),
        expanded=torch.tensor([1.0, 2.0]).expand(3, 2),      # stride 0
        param=torch.nn.Parameter(torch.randn(2, 3)),
    )
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    got = load_torch_state_dict(path)
    _assert_same(torch, got, torch.load(path))
    assert got["transposed"].flags.c_contiguous
    got["view_offset"][0, 0] = -1  # views were materialised: no aliasing between entries
    assert got["base"][1, 2] == 8


def test_nested_checkpoint_and_shared_storage(torch, tmp_path):
    w = torch.randn(3, 3)
    ckpt = {"model": OrderedDict(a=w, b=w), "epoch": 7, "history": [1.5, {"lr": torch.tensor(0.1)}],
            "name": "run", "shape": (2, 3)}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    got = load_torch_state_dict(path)
    assert got["epoch"] == 7 and got["name"] == "run" and got["shape"] == (2, 3)
    np.testing.assert_array_equal(got["model"]["a"], w.numpy())
    np.testing.assert_array_equal(got["model"]["b"], w.numpy())
    np.testing.assert_allclose(got["history"][1]["lr"], 0.1, rtol=1e-7)


def test_big_endian_storage(torch, tmp_path):
    values = (np.arange(6, dtype=np.float32) * 1.5).astype(">f4")
    pkl = _crafted(torch, {"w": (0, (2, 3), (3, 1))}, 6)
    path = tmp_path / "big.pt"
    _write_zip(path, pkl, {"0": values.tobytes()}, byteorder="big")
    got = load_torch_state_dict(path)
    assert got["w"].dtype == np.float32 and got["w"].dtype.isnative
    np.testing.assert_array_equal(got["w"], values.reshape(2, 3))


def test_does_not_import_torch(torch, tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, path)
    code = ("import sys; from atrous.io import torch_pickle as t; "
            f"s = t.load_torch_state_dict({str(path)!r}); "
            "assert s['w'].tolist() == [1.0, 1.0]; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----- security ----------------------------------------------------------------------------------
class _Payload:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_os_system_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    pkl = pickle.dumps(OrderedDict(w=_Payload(f"touch {marker}")), protocol=2)
    path = tmp_path / "evil.pt"
    _write_zip(path, pkl, {})
    with pytest.raises(UnsafeCheckpointError, match=rf"refusing to load global '{os.system.__module__}\.system'"):
        load_torch_state_dict(path)
    assert not marker.exists()
    # The payload is live: plain pickle would have run it (so the check above is meaningful).
    pickle.loads(pkl)
    assert marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("torch.nn.modules.conv", "Conv2d"),
                                         ("numpy", "load"), ("torch._utils", "_rebuild_device_tensor_from_numpy")])
def test_other_globals_are_refused(tmp_path, module, name):
    # GLOBAL opcode by hand: the class need not exist here for the file to name it.
    pkl = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    path = tmp_path / "x.pt"
    _write_zip(path, pkl, {})
    with pytest.raises(UnsafeCheckpointError, match=rf"'{module}\.{name}'"):
        load_torch_state_dict(path)


def test_whole_model_pickle_is_refused(torch, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 3), path)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("tensors,numel,raw_bytes,match", [
    ({"w": (0, (10**6, 10**6), (10**6, 1))}, 4, 16, "reaches element"),
    ({"w": (0, (10**12,), (0,))}, 4, 16, "refusing to allocate"),
    ({"w": (3, (2,), (1,))}, 4, 16, "reaches element"),
    ({"w": (0, (4,), (1,))}, 10**12, 16, "declares 1000000000000 x FloatStorage"),
    ({"w": (0, (-1,), (1,))}, 4, 16, "non-negative"),
    ({"w": (0, (2, 2), (1,))}, 4, 16, "equal length"),
])
def test_bad_sizes_fail_before_allocating(torch, tmp_path, tensors, numel, raw_bytes, match):
    path = tmp_path / "huge.pt"
    _write_zip(path, _crafted(torch, tensors, numel), {"0": b"\0" * raw_bytes})
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            load_torch_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_missing_storage_and_bad_key(torch, tmp_path):
    path = tmp_path / "missing.pt"
    _write_zip(path, _crafted(torch, {"w": (0, (4,), (1,))}, 4), {})
    with pytest.raises(ValueError, match="storage 0 is missing"):
        load_torch_state_dict(path)


def test_not_a_zip_and_legacy_format(torch, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="legacy pre-1.6"):
        load_torch_state_dict(path)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a torch.save zip archive"):
        load_torch_state_dict(tmp_path / "text.pt")


def test_not_a_dict(torch, tmp_path):
    path = tmp_path / "t.pt"
    torch.save(torch.ones(2), path)
    with pytest.raises(ValueError, match="expected a state dict"):
        load_torch_state_dict(path)
