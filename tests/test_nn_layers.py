"""Each layer against torch.nn's: same state dict loaded, same output, same input and parameter
gradients, same running statistics; random configurations for Conv2d and BatchNorm; the
layers' construction-time and call-time errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
from atrous import Tensor, nn

RTOL = 1e-9  # float64 on both sides


def _randomise(torch, module):
    """Random values in every floating parameter and buffer (variances kept positive)."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.uniform_(0.5, 2.0)
                else:
                    t.normal_(0.0, 0.5)


def _pair(torch, name, args, kwargs):
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    _randomise(torch, theirs)
    ours = getattr(nn, name)(*args, **kwargs).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _run_both(torch, ours, theirs, x, rng, extra_ours=(), extra_theirs=()):
    """Forward and backward (with a random upstream gradient) through both modules."""
    xa = Tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    out = ours(xa, *extra_ours)
    tout = theirs(xt, *extra_theirs)
    if isinstance(tout, tuple):
        np.testing.assert_array_equal(out[1].numpy(), tout[1].numpy())  # pooling indices
        out, tout = out[0], tout[0]
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=RTOL, atol=1e-12)
    assert out.dtype == np.float64
    R = rng.standard_normal(out.shape)
    out.backward(R)
    tout.backward(torch.from_numpy(R))
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-8, atol=1e-11, err_msg="input grad")
    t_params = dict(theirs.named_parameters())
    for pname, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[pname].grad.numpy(), rtol=1e-8, atol=1e-11,
                                   err_msg=f"grad of {pname}")
    t_state = theirs.state_dict()
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, t_state[k].numpy(), rtol=RTOL, atol=1e-12, err_msg=k)


# (class name, args, kwargs, input shape)
CASES = [
    ("Conv2d", (3, 4, 3), dict(padding=1), (2, 3, 7, 6)),
    ("Conv2d", (4, 6, (3, 2)), dict(stride=(2, 1), dilation=(1, 2), groups=2, bias=False), (2, 4, 9, 8)),
    ("Conv2d", (2, 3, 4), dict(padding="same", dilation=2), (2, 2, 7, 8)),
    ("Conv2d", (2, 3, 3), dict(padding=(1, 2), padding_mode="reflect"), (2, 2, 6, 7)),
    ("Conv2d", (2, 2, 4), dict(padding="same", padding_mode="replicate"), (3, 2, 5, 6)),
    ("Conv2d", (2, 3, 3), dict(padding=1, padding_mode="circular", stride=2), (2, 2, 5, 6)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 4, 5)),
    ("ConvTranspose2d", (3, 2, (2, 3)), dict(dilation=2, bias=False), (2, 3, 3, 4)),
    ("Linear", (5, 3), {}, (4, 5)),
    ("Linear", (5, 3), dict(bias=False), (2, 3, 5)),
    ("MaxPool2d", (3, 2), {}, (2, 3, 9, 8)),
    ("MaxPool2d", (2,), dict(stride=1, padding=1, dilation=2, ceil_mode=True, return_indices=True), (2, 2, 6, 7)),
    ("AvgPool2d", (3, 2, 1), dict(ceil_mode=True, count_include_pad=False), (2, 3, 8, 7)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (2, 2, 6, 6)),
    ("AdaptiveAvgPool2d", ((3, 2),), {}, (2, 3, 7, 5)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 4, 4)),
    ("AdaptiveMaxPool2d", ((2, 3),), dict(return_indices=True), (2, 3, 5, 7)),
    ("BatchNorm2d", (3,), {}, (4, 3, 5, 4)),
    ("BatchNorm2d", (3,), dict(affine=False, momentum=None), (4, 3, 2, 3)),
    ("BatchNorm2d", (3,), dict(track_running_stats=False), (4, 3, 2, 3)),
    ("BatchNorm1d", (4,), dict(eps=1e-3), (5, 4)),
    ("BatchNorm1d", (4,), dict(momentum=0.5), (3, 4, 6)),
    ("LocalResponseNorm", (3,), dict(alpha=1e-2, beta=0.75, k=2.0), (2, 6, 3, 3)),
    ("ReLU", (), {}, (3, 4, 5)),
    ("LeakyReLU", (0.2,), {}, (3, 4, 5)),
    ("PReLU", (), {}, (2, 3, 4, 4)),
    ("PReLU", (3,), dict(init=0.1), (2, 3, 4, 4)),
    ("ELU", (0.7,), {}, (3, 4, 5)),
    ("Tanh", (), {}, (3, 4)),
    ("Sigmoid", (), {}, (3, 4)),
    ("Softmax", (1,), {}, (3, 4, 2)),
    ("LogSoftmax", (-1,), {}, (3, 5)),
    ("Flatten", (), {}, (2, 3, 4, 5)),
    ("Flatten", (0, 2), {}, (2, 3, 4, 5)),
    ("Identity", (), {}, (2, 3)),
    ("Dropout", (0.4,), {}, (3, 4)),  # compared in eval mode (the identity) below
]


# Dropout's random masks differ between libraries: it is compared in eval mode only here, and
# its training behaviour is tested in test_dropout_module.
MODE_CASES = [(mode, *case) for case in CASES for mode in ("train", "eval")
              if not (case[0] == "Dropout" and mode == "train")]


@pytest.mark.parametrize("mode,name,args,kwargs,shape", MODE_CASES,
                         ids=[f"{c[1]}-{i // 2}-{c[0]}" for i, c in enumerate(MODE_CASES)])
def test_layer_matches_torch(torch, rng, name, args, kwargs, shape, mode):
    ours, theirs = _pair(torch, name, args, kwargs)
    getattr(ours, mode)()
    getattr(theirs, mode)()
    _run_both(torch, ours, theirs, rng.standard_normal(shape), rng)


def test_non_contiguous_input(torch, rng):
    ours, theirs = _pair(torch, "Conv2d", (3, 4, 3), dict(stride=2, padding=1))
    x = rng.standard_normal((2, 6, 9, 3)).transpose(0, 3, 2, 1)[:, :, ::1, 1:]  # (2, 3, 9, 5) view
    assert not x.flags.c_contiguous
    _run_both(torch, ours, theirs, x, rng)


def test_conv_transpose_output_size(torch, rng):
    ours, theirs = _pair(torch, "ConvTranspose2d", (2, 3, 3), dict(stride=3, padding=1))
    x = rng.standard_normal((2, 2, 4, 5))
    for size in [(10, 13), (12, 15), (2, 2, 11, 14)]:
        out = ours(x, output_size=size)
        tout = theirs(torch.from_numpy(x), output_size=list(size))
        assert out.shape == tuple(tout.shape)
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=RTOL, atol=1e-12)
    with pytest.raises(ValueError, match=r"valid sizes range from 10 to 12"):
        ours(x, output_size=(13, 13))


# The functional tests cover conv2d's geometry in depth; here the layer's wiring (padding
# modes, 'same', groups, bias) over fewer draws.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@settings(max_examples=50)
@given(
    data=st.data(),
    groups=st.sampled_from([1, 2, 3]),
    bias=st.booleans(),
    padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
)
def test_conv2d_random_configurations(torch, data, groups, bias, padding_mode):
    torch_ = torch
    in_c = groups * data.draw(st.integers(1, 2))
    out_c = groups * data.draw(st.integers(1, 2))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    use_same = data.draw(st.booleans())
    if use_same:
        stride, padding = 1, "same"
    else:
        stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
        padding = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    # Reflect padding needs pad < input size; keep inputs comfortably larger than the window.
    H, W = data.draw(st.integers(5, 8)), data.draw(st.integers(5, 8))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                  padding_mode=padding_mode)
    ours, theirs = _pair(torch_, "Conv2d", (in_c, out_c, k), kwargs)
    assert repr(ours) == repr(theirs)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    _run_both(torch_, ours, theirs, rng.standard_normal((2, in_c, H, W)), rng)


@settings(max_examples=50)
@given(
    momentum=st.sampled_from([0.1, 0.5, 1.0, None]),
    affine=st.booleans(),
    track=st.booleans(),
    modes=st.lists(st.sampled_from(["train", "eval"]), min_size=1, max_size=4),
    two_d=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_several_steps(torch, momentum, affine, track, modes, two_d, seed):
    name, shape = ("BatchNorm2d", (3, 4, 2, 3)) if two_d else ("BatchNorm1d", (5, 4))
    ours, theirs = _pair(torch, name, (4,), dict(momentum=momentum, affine=affine, track_running_stats=track))
    rng = np.random.default_rng(seed)
    for mode in modes:
        getattr(ours, mode)()
        getattr(theirs, mode)()
        ours.zero_grad()
        theirs.zero_grad()
        _run_both(torch, ours, theirs, rng.standard_normal(shape) * 2 + 1, rng)
    if track:
        assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == modes.count("train")


@pytest.mark.parametrize(
    "name,kwargs",
    [("CrossEntropyLoss", {}), ("CrossEntropyLoss", dict(reduction="sum", label_smoothing=0.2)),
     ("CrossEntropyLoss", dict(weight=True, ignore_index=1)), ("CrossEntropyLoss", dict(reduction="none", weight=True)),
     ("NLLLoss", {}), ("NLLLoss", dict(weight=True, reduction="sum", ignore_index=2))],
)
def test_classification_losses(torch, rng, name, kwargs):
    C = 4
    x = rng.standard_normal((6, C, 3))
    y = rng.integers(0, C, size=(6, 3))
    if name == "NLLLoss":
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    weight = rng.uniform(0.5, 2.0, C) if kwargs.pop("weight", False) else None
    ours = getattr(nn, name)(weight=weight, **kwargs)
    theirs = getattr(torch.nn, name)(weight=None if weight is None else torch.from_numpy(weight), **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    xa, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = ours(xa, y), theirs(xt, torch.from_numpy(y))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=RTOL)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(torch, rng, reduction):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    xa = Tensor(a, requires_grad=True)
    out = nn.MSELoss(reduction=reduction)(xa, b)
    tout = torch.nn.MSELoss(reduction=reduction)(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(out.numpy(), tout.numpy(), rtol=RTOL)
    # Legacy flags map to a reduction as in PyTorch.
    assert nn.MSELoss(size_average=False).reduction == "sum"
    assert nn.MSELoss(reduce=False).reduction == "none"


def test_dropout_module():
    x = np.ones((200, 100), np.float32)
    drop = nn.Dropout(0.3)
    atrous.manual_seed(5)
    y1 = drop(x).numpy()
    atrous.manual_seed(5)
    y2 = drop(x).numpy()
    np.testing.assert_array_equal(y1, y2)
    assert np.mean(y1 == 0) == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(y1[y1 != 0], 1 / 0.7, rtol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x)


def test_module_float32_end_to_end(torch, rng):
    """The default dtype path: float32 parameters, float32 outputs and gradients."""
    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    out = ours(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 2)
    nn.CrossEntropyLoss()(out, np.array([0, 1])).backward()
    assert all(p.grad.dtype == np.float32 for p in ours.parameters())


# ----- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), r"in_channels must be divisible by groups, got in_channels=3, groups=2"),
        (lambda: nn.Conv2d(4, 3, 3, groups=2), r"out_channels must be divisible by groups, got out_channels=3"),
        (lambda: nn.Conv2d(4, 4, 3, groups=0), r"groups must be a positive integer"),
        (lambda: nn.Conv2d(0, 4, 3), r"in_channels must be a positive integer, got 0"),
        (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), r"padding='same' is not supported for strided"),
        (lambda: nn.Conv2d(3, 4, 3, padding="full"), r"invalid padding string 'full'"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), r"padding must be non-negative"),
        (lambda: nn.Conv2d(3, 4, 0), r"kernel_size must be >= 1"),
        (lambda: nn.Conv2d(3, 4, 3, padding_mode="wrap"), r"padding_mode must be one of"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), r"output_padding must be smaller"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"), r'only "zeros" padding_mode'),
        (lambda: nn.Linear(-1, 3), r"in_features must be a non-negative integer"),
        (lambda: nn.BatchNorm2d(0), r"BatchNorm2d: num_features must be a positive integer, got 0"),
        (lambda: nn.BatchNorm2d(3, momentum=1.5), r"momentum must be in \[0, 1\] or None"),
        (lambda: nn.Dropout(1.5), r"between 0 and 1, but got 1.5"),
        (lambda: nn.PReLU(0), r"num_parameters must be a positive integer"),
        (lambda: nn.CrossEntropyLoss(reduction="avg"), r"'avg' is not a valid value for reduction"),
        (lambda: nn.CrossEntropyLoss(label_smoothing=2.0), r"label_smoothing must be between"),
    ],
)
def test_construction_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_call_errors_name_the_layer_and_shapes():
    bn = nn.BatchNorm2d(16)
    with pytest.raises(ValueError) as info:
        bn(np.zeros((2, 8, 5, 5), np.float32))
    msg = str(info.value)
    assert msg.startswith("BatchNorm2d(16):") and "16 channels" in msg and "(2, 8, 5, 5)" in msg
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16\): expected 4D input \(N, C, H, W\), got 3D input of shape \(16, 5, 5\)"):
        bn(np.zeros((16, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): expected 2D or 3D input .* got 4D"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): .*got 4 channels in input of shape \(2, 4\)"):
        nn.BatchNorm1d(3)(np.zeros((2, 4), np.float32))
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\): expected input "
                                         r"with 3 channels \(in_channels\), got 4 channels in input of shape \(1, 4, 5, 5\)"):
        conv(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected a 3-D \(C, H, W\) or 4-D .* got 2-D with shape \(5, 5\)"):
        conv(np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=2, bias=True\): expected input with 4 "
                                         r"features .* got input of shape \(3, 5\)"):
        nn.Linear(4, 2)(np.zeros((3, 5), np.float32))
    # Kernel larger than the padded input, pooling padding over half the kernel: the functional
    # ops' messages, reached through the layers.
    with pytest.raises(ValueError, match="conv2d"):
        conv(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="max_pool2d.*padding"):
        nn.MaxPool2d(2, padding=2)(np.zeros((1, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match="avg_pool2d"):
        nn.AvgPool2d(5)(np.zeros((1, 3, 4, 4), np.float32))
