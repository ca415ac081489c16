"""Module machinery: registration, traversal order, state_dict keys against PyTorch, loading,
modes, dtype conversion, containers and repr."""
from collections import OrderedDict

import numpy as np
import pytest

import atrous
from atrous import nn
from atrous.nn import Module, Parameter

# Every layer type, as (class name, args, kwargs); built identically in atrous and torch.
LAYERS = [
    ("Conv2d", (3, 16, 3), dict(padding=1)),
    ("Conv2d", (4, 8, (3, 5)), dict(stride=2, dilation=(2, 1), groups=2, bias=False)),
    ("Conv2d", (4, 4, 3), dict(padding="same", padding_mode="reflect", groups=4)),
    ("Conv2d", (2, 6, 1), dict(padding="valid")),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, output_padding=1, groups=2)),
    ("ConvTranspose2d", (3, 5, (2, 4)), dict(bias=False, dilation=2, padding=(1, 0))),
    ("Linear", (7, 5), {}),
    ("Linear", (3, 4), dict(bias=False)),
    ("MaxPool2d", (3, 2), {}),
    ("MaxPool2d", ((2, 3),), dict(stride=1, padding=1, dilation=2, ceil_mode=True)),
    ("AvgPool2d", (2,), {}),
    ("AvgPool2d", (3, 2, 1), dict(ceil_mode=True, count_include_pad=False)),
    ("AdaptiveAvgPool2d", ((1, 1),), {}),
    ("AdaptiveAvgPool2d", (3,), {}),
    ("AdaptiveMaxPool2d", ((2, 3),), {}),
    ("BatchNorm2d", (16,), {}),
    ("BatchNorm2d", (5,), dict(eps=1e-3, momentum=None)),
    ("BatchNorm2d", (4,), dict(affine=False)),
    ("BatchNorm2d", (4,), dict(track_running_stats=False)),
    ("BatchNorm2d", (4,), dict(bias=False)),
    ("BatchNorm1d", (6,), dict(momentum=0.3)),
    ("LocalResponseNorm", (5,), dict(alpha=2e-4, beta=0.7, k=2.0)),
    ("ReLU", (), {}),
    ("ReLU", (True,), {}),
    ("LeakyReLU", (0.2,), {}),
    ("LeakyReLU", (), dict(inplace=True)),
    ("PReLU", (), {}),
    ("PReLU", (3,), dict(init=0.1)),
    ("ELU", (0.5,), {}),
    ("Tanh", (), {}),
    ("Sigmoid", (), {}),
    ("Softmax", (), dict(dim=1)),
    ("LogSoftmax", (-1,), {}),
    ("Dropout", (), {}),
    ("Dropout", (0.2,), {}),
    ("Flatten", (), {}),
    ("Flatten", (0, 2), {}),
    ("Identity", (), {}),
    ("CrossEntropyLoss", (), dict(label_smoothing=0.1)),
    ("NLLLoss", (), dict(ignore_index=3, reduction="sum")),
    ("MSELoss", (), dict(reduction="none")),
]
LAYER_IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(LAYERS)]


def _key_shapes(state_dict):
    return [(k, tuple(v.shape), str(np.asarray(v).dtype)) for k, v in state_dict.items()]


def _torch_key_shapes(state_dict):
    out = []
    for k, v in state_dict.items():
        out.append((k, tuple(v.shape), str(v.numpy().dtype)))
    return out


def _nested(lib):
    """The same nested tree in atrous.nn or torch.nn (containers inside containers)."""
    return lib.Sequential(
        OrderedDict(
            stem=lib.Sequential(lib.Conv2d(3, 8, 3, bias=False), lib.BatchNorm2d(8), lib.ReLU()),
            blocks=lib.ModuleList(
                [lib.Sequential(lib.Conv2d(8, 8, 3, padding=1), lib.BatchNorm2d(8)) for _ in range(2)]
                + [lib.PReLU(8)]
            ),
            heads=lib.ModuleDict(
                {"cls": lib.Linear(8, 10), "aux": lib.Sequential(lib.Flatten(), lib.Linear(8, 2, bias=False))}
            ),
            pool=lib.AdaptiveAvgPool2d(1),
            norm1d=lib.BatchNorm1d(10, affine=False),
        )
    )


class Toy(Module):
    """A module written the way users write them, with a shared parameter and a buffer."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(np.ones((2, 3), np.float32))
        self.register_buffer("count", np.zeros((), np.int64))
        self.register_buffer("scratch", np.zeros(3, np.float32), persistent=False)
        self.inner = nn.Linear(3, 2)
        self.alias = self.inner  # the same child twice
        self.flag = "not registered"

    def forward(self, x):
        return x * 2


# ----- registration ----------------------------------------------------------------------

def test_attribute_assignment_registers_parameters_buffers_and_children():
    m = Toy()
    assert list(m._parameters) == ["w"]
    assert list(m._buffers) == ["count", "scratch"]
    assert list(m._modules) == ["inner", "alias"]
    assert "flag" in m.__dict__ and "w" not in m.__dict__
    assert m.w is m._parameters["w"] and m.inner is m._modules["inner"]
    assert isinstance(m.count, atrous.Tensor) and m.count.dtype == np.int64
    # Shared child and its parameters are yielded once, under the first name.
    assert [n for n, _ in m.named_parameters()] == ["w", "inner.weight", "inner.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "inner"]
    assert [n for n, _ in m.named_children()] == ["inner"]
    assert [n for n, _ in m.named_buffers()] == ["count", "scratch"]
    # state_dict does not deduplicate (as PyTorch) and leaves out non-persistent buffers.
    assert list(m.state_dict()) == ["w", "count", "inner.weight", "inner.bias", "alias.weight", "alias.bias"]
    assert [n for n, _ in m.named_parameters(recurse=False)] == ["w"]
    assert len(list(m.parameters())) == 3 and len(list(m.buffers())) == 2


def test_reassignment_moves_names_between_registries():
    m = Toy()
    m.w = None  # a registered parameter may become None
    assert "w" in m._parameters and m.w is None and "w" not in m.state_dict()
    with pytest.raises(TypeError, match="parameter 'w'"):
        m.w = np.zeros(3)
    with pytest.raises(TypeError, match="child module 'inner'"):
        m.inner = 3
    m.count = np.ones((), np.int64)  # arrays assigned to a buffer name stay buffers
    assert isinstance(m.count, atrous.Tensor) and m.count.data == 1
    m.flag = nn.ReLU()  # a plain attribute becomes a child
    assert "flag" in m._modules and "flag" not in m.__dict__
    m.inner = Parameter(np.zeros(1, np.float32))  # a child becomes a parameter
    assert "inner" not in m._modules and "inner" in m._parameters
    del m.inner, m.count, m.flag
    assert "inner" not in m._parameters and "count" not in m._buffers and "flag" not in m._modules
    with pytest.raises(AttributeError, match="'Toy' object has no attribute 'inner'"):
        m.inner  # noqa: B018


def test_registration_errors():
    class Early(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()
    m = Toy()
    with pytest.raises(KeyError, match='contain "."'):
        m.register_buffer("a.b", np.zeros(1))
    with pytest.raises(KeyError, match="empty"):
        m.register_parameter("", None)
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("flag", np.zeros(1))
    with pytest.raises(TypeError, match="buffer 'b'"):
        m.register_buffer("b", [1, 2])
    with pytest.raises(TypeError, match="parameter 'p'"):
        m.register_parameter("p", atrous.Tensor(np.zeros(2)))
    with pytest.raises(TypeError, match="not a Module"):
        m.add_module("x", np.zeros(1))
    nonleaf = atrous.Tensor(np.ones(2), requires_grad=True) * 2
    with pytest.raises(ValueError, match="non-leaf"):
        m.register_parameter("q", _as_nonleaf_param(nonleaf))
    with pytest.raises(NotImplementedError, match='"forward"'):
        Module()(1)


def _as_nonleaf_param(t):
    p = Parameter(t.data)
    p._fn = t._fn
    return p


def test_parameter_defaults_and_repr(torch):
    p = Parameter(np.arange(3, dtype=np.float32))
    assert p.requires_grad and p.is_leaf and isinstance(p, atrous.Tensor)
    assert not Parameter(np.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\n") and "requires_grad=True" in repr(p)
    assert repr(torch.nn.Parameter(torch.zeros(2))).startswith("Parameter containing:\n")
    a = np.zeros(4, np.float32)
    assert Parameter(a).data is a  # shares the array, as torch's Parameter shares storage
    assert Parameter(atrous.Tensor(a)).data is a
    assert Parameter().shape == (0,)


# ----- against PyTorch: names, shapes, dtypes, order, repr ----------------------------------

@pytest.mark.parametrize("name,args,kwargs", LAYERS, ids=LAYER_IDS)
def test_layer_state_dict_and_repr_match_torch(torch, name, args, kwargs):
    ours = getattr(nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    assert _key_shapes(ours.state_dict()) == _torch_key_shapes(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert repr(ours) == repr(theirs)


def test_nested_containers_match_torch(torch):
    ours, theirs = _nested(nn), _nested(torch.nn)
    assert _key_shapes(ours.state_dict()) == _torch_key_shapes(theirs.state_dict())
    for method in ("named_parameters", "named_buffers", "named_modules", "named_children"):
        got = [n for n, _ in getattr(ours, method)()]
        want = [n for n, _ in getattr(theirs, method)()]
        assert got == want, method
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert repr(ours) == repr(theirs)
    assert [n for n, _ in ours.blocks.named_parameters(prefix="blocks")] == [
        n for n, _ in theirs.blocks.named_parameters(prefix="blocks")
    ]
    assert ours.get_submodule("blocks.1.0") is ours.blocks[1][0]
    assert ours.get_parameter("heads.cls.bias") is ours.heads["cls"].bias
    with pytest.raises(AttributeError, match="nope"):
        ours.get_submodule("blocks.nope")


def test_apply_visits_in_torch_order(torch):
    ours, theirs = _nested(nn), _nested(torch.nn)
    seen_ours, seen_theirs = [], []
    assert ours.apply(lambda m: seen_ours.append(type(m).__name__)) is ours
    theirs.apply(lambda m: seen_theirs.append(type(m).__name__))
    assert seen_ours == seen_theirs


# ----- loading ----------------------------------------------------------------------------

def test_load_torch_state_dict_as_arrays_and_tensors(torch):
    ours, theirs = _nested(nn), _nested(torch.nn)
    with torch.no_grad():
        for t in theirs.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape))
        theirs.stem[1].num_batches_tracked.fill_(7)
    before = {k: v for k, v in ours.state_dict().items()}
    result = ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    for k, v in ours.state_dict().items():
        assert v is before[k], "load_state_dict must copy into the existing arrays"
        np.testing.assert_array_equal(v, theirs.state_dict()[k].numpy())
    assert ours.stem[1].num_batches_tracked.dtype == np.int64 and int(ours.stem[1].num_batches_tracked.item()) == 7
    # torch tensors straight from the state dict (anything with .numpy()) and atrous Tensors.
    fresh = _nested(nn)
    fresh.load_state_dict(theirs.state_dict())
    fresh.load_state_dict({k: atrous.Tensor(v) for k, v in ours.state_dict().items()})
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, ours.state_dict()[k])


def test_load_state_dict_casts_to_existing_dtype():
    m = nn.Linear(3, 2)
    m.load_state_dict({"weight": np.full((2, 3), 1 / 3, np.float64), "bias": np.array([1, 2])})
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    np.testing.assert_array_equal(m.weight.data, np.float32(1 / 3))
    np.testing.assert_array_equal(m.bias.data, [1.0, 2.0])


def test_load_state_dict_errors_list_every_problem(torch):
    ours = _nested(nn)
    sd = {k: v.copy() for k, v in ours.state_dict().items()}
    del sd["heads.cls.weight"], sd["stem.1.running_var"]
    sd["heads.cls.extra"] = np.zeros(2)
    sd["blocks.0.0.weight"] = np.zeros((8, 8, 5, 5), np.float32)
    with pytest.raises(RuntimeError) as info:
        ours.load_state_dict(sd)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "stem.1.running_var", "heads.cls.weight".' in msg
    assert 'Unexpected key(s) in state_dict: "heads.cls.extra".' in msg
    assert ("size mismatch for blocks.0.0.weight: copying a param with shape (8, 8, 5, 5) from "
            "checkpoint, the shape in current model is (8, 8, 3, 3).") in msg
    # PyTorch reports the same three problems for the same dict.
    theirs = _nested(torch.nn)
    with pytest.raises(RuntimeError) as tinfo:
        theirs.load_state_dict({k: torch.as_tensor(v) for k, v in sd.items()})
    for key in ("stem.1.running_var", "heads.cls.weight", "heads.cls.extra", "blocks.0.0.weight"):
        assert key in str(tinfo.value)
    # Nothing was half-loaded.
    assert not np.any(ours.stem[1].running_var.data != 1)


def test_load_state_dict_non_strict_and_shape_mismatch_always_fails():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = {"0.weight": np.ones((3, 2)), "9.bias": np.zeros(1)}
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"]
    assert result.unexpected_keys == ["9.bias"]
    assert result == (result.missing_keys, result.unexpected_keys)
    np.testing.assert_array_equal(m[0].weight.data, 1)
    with pytest.raises(RuntimeError, match="size mismatch for 0.weight"):
        m.load_state_dict({"0.weight": np.ones((2, 3))}, strict=False)
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])


def test_missing_num_batches_tracked_is_tolerated_as_torch(torch):
    sd = {"weight": np.ones(3), "bias": np.zeros(3), "running_mean": np.ones(3), "running_var": np.ones(3)}
    theirs = torch.nn.BatchNorm2d(3)
    theirs.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()})
    ours = nn.BatchNorm2d(3)
    assert ours.load_state_dict(sd).missing_keys == []
    np.testing.assert_array_equal(ours.running_mean.data, 1)


# ----- modes, gradients, dtype --------------------------------------------------------------

def test_train_eval_recurse():
    m = _nested(nn)
    assert m.eval() is m
    assert all(not mod.training for mod in m.modules())
    m.heads.train()
    assert m.heads["aux"][0].training and not m.stem.training
    assert m.train() is m and all(mod.training for mod in m.modules())
    with pytest.raises(ValueError, match="boolean"):
        m.train("no")


def test_zero_grad_and_requires_grad():
    m = nn.Linear(3, 2)
    m.weight.grad = np.ones((2, 3), np.float32)
    shared = m.weight.grad
    m.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(m.weight.grad, 0)
    np.testing.assert_array_equal(shared, 1)  # the old array is not overwritten
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    assert m.requires_grad_(False) is m
    assert not m.weight.requires_grad and not m.bias.requires_grad
    m.requires_grad_()
    assert m.weight.requires_grad


def test_to_dtype_casts_floating_state_only():
    m = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    m[0].weight.grad = np.ones((3, 2, 1, 1), np.float32)
    w = m[0].weight
    assert m.double() is m
    assert m[0].weight is w and w.dtype == np.float64 and w.grad.dtype == np.float64
    assert m[1].running_var.dtype == np.float64
    assert m[1].num_batches_tracked.dtype == np.int64
    assert all(v.dtype in (np.float64, np.int64) for v in m.state_dict().values())
    m.to("float32")
    assert m[1].weight.dtype == np.float32
    m.to(dtype=np.float64, device="cpu")
    assert m[1].bias.dtype == np.float64
    assert m.float() is m and m[0].bias.dtype == np.float32
    with pytest.raises(TypeError, match="floating point"):
        m.to(np.int32)
    with pytest.raises(ValueError, match="device"):
        m.to(device="cuda")


def test_call_runs_forward_and_hooks():
    m = Toy()
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] + 1,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append((args, out)) or out * 10)
    assert m(1) == 40  # (1 + 1) * 2 * 10
    assert calls == [((2,), 4)]
    h1.remove()
    h2.remove()
    assert m(1) == 2


def test_layers_accept_dtype():
    for layer in (nn.Conv2d(2, 3, 3, dtype=np.float64), nn.ConvTranspose2d(2, 3, 3, dtype="float64"),
                  nn.Linear(2, 3, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64),
                  nn.PReLU(dtype=np.float64)):
        assert all(p.dtype == np.float64 for p in layer.parameters()), layer


# ----- containers ---------------------------------------------------------------------------

def test_sequential_indexing_slicing_and_editing(torch):
    layers = lambda lib: [lib.Linear(4, 4), lib.ReLU(), lib.Linear(4, 3), lib.Tanh(), lib.Linear(3, 1)]  # noqa: E731
    ours, theirs = nn.Sequential(*layers(nn)), torch.nn.Sequential(*layers(torch.nn))
    assert len(ours) == 5 and list(ours) == [ours[i] for i in range(5)]
    assert ours[-1] is ours[4] and isinstance(ours[1:3], nn.Sequential)
    assert list(ours[1:4:2]._modules) == list(theirs[1:4:2]._modules) == ["1", "3"]
    with pytest.raises(IndexError, match="out of range"):
        ours[5]  # noqa: B018
    del ours[1]
    del theirs[1]
    assert list(ours._modules) == list(theirs._modules) == ["0", "1", "2", "3"]
    ours.append(nn.Sigmoid())
    theirs.append(torch.nn.Sigmoid())
    ours.insert(1, nn.ELU())
    theirs.insert(1, torch.nn.ELU())
    ours[0] = nn.Identity()
    theirs[0] = torch.nn.Identity()
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert isinstance(ours.pop(1), nn.ELU) and len(ours) == 5
    od = nn.Sequential(OrderedDict(a=nn.ReLU(), b=nn.Tanh()))
    assert list(od._modules) == ["a", "b"] and od[1] is od.b
    assert len(od + nn.Sequential(nn.ReLU())) == 3


def test_sequential_forward_chains():
    class AddOne(Module):
        def forward(self, x):
            return x + 1

    class Double(Module):
        def forward(self, x):
            return x * 2

    assert nn.Sequential(AddOne(), Double(), AddOne())(1) == 5
    assert nn.Sequential()(7) == 7


def test_module_list_and_dict(torch):
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    tl = torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.Tanh()])
    ml += [nn.Linear(2, 2)]
    tl += [torch.nn.Linear(2, 2)]
    ml.insert(0, nn.Sigmoid())
    tl.insert(0, torch.nn.Sigmoid())
    ml.extend([nn.ReLU(), nn.ReLU()])
    tl.extend([torch.nn.ReLU(), torch.nn.ReLU()])
    del ml[1]
    del tl[1]
    assert repr(ml) == repr(tl)
    assert list(ml.state_dict()) == list(tl.state_dict())
    assert isinstance(ml[-1], nn.ReLU) and len(ml[1:3]) == 2 and isinstance(ml[1:3], nn.ModuleList)
    with pytest.raises(TypeError, match="iterable"):
        ml.extend(3)
    with pytest.raises(IndexError):
        ml[10]  # noqa: B018
    md = nn.ModuleDict({"b": nn.ReLU()})
    md.update([("a", nn.Linear(1, 2))])
    md["c"] = nn.Tanh()
    assert list(md) == ["b", "a", "c"] and "a" in md and len(md) == 3
    assert list(md.state_dict()) == ["a.weight", "a.bias"]
    assert isinstance(md.pop("b"), nn.ReLU) and list(md.keys()) == ["a", "c"]
    with pytest.raises(ValueError, match="length 3"):
        md.update([("x", nn.ReLU(), 1)])
    md.clear()
    assert len(md) == 0


def test_replacing_an_entry_keeps_its_position(torch):
    ours, theirs = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ours[0].weight = Parameter(np.zeros((2, 2), np.float32))
    theirs[0].weight = torch.nn.Parameter(torch.zeros(2, 2))
    ours[1].running_mean = np.ones(2, np.float32)
    theirs[1].running_mean = torch.ones(2)
    ours[0] = nn.Linear(2, 2)
    theirs[0] = torch.nn.Linear(2, 2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    np.testing.assert_array_equal(ours[1].running_mean.data, 1)


def test_deepcopy_and_tied_parameters():
    import copy

    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.BatchNorm1d(3))
    m[1].weight = m[0].weight  # tied weights are one parameter, listed once
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "1.bias", "2.weight", "2.bias"]
    assert "1.weight" in m.state_dict()
    c = copy.deepcopy(m)
    assert c[1].weight is c[0].weight and c[0].weight is not m[0].weight
    c[2].running_mean.data += 1
    np.testing.assert_array_equal(m[2].running_mean.data, 0)
    assert repr(c) == repr(m)
