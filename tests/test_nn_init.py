"""atrous.nn.init: distributions checked against the closed-form bounds and standard deviations,
deterministic fills against PyTorch, and the layers' default initialisation."""
import math

import numpy as np
import pytest

import atrous
from atrous import nn
from atrous.nn import init

SHAPE = (128, 64, 3, 3)  # fan_in = 576, fan_out = 1152; 73728 draws
FAN_IN, FAN_OUT = 64 * 9, 128 * 9


def _draw(fn, *args, dtype=np.float32, shape=SHAPE, **kwargs):
    atrous.manual_seed(0)
    p = nn.Parameter(np.zeros(shape, dtype))
    out = fn(p, *args, **kwargs)
    assert out is p, "init functions return the tensor they fill"
    assert p.dtype == dtype
    return p.data.astype(np.float64)


def _assert_uniform(values, bound):
    # Max |x| of 73728 U(-b, b) draws is within b * 1e-4 of b; the std is b / sqrt(3).
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert np.abs(values).max() >= bound * 0.999
    assert abs(values.mean()) < 0.02 * bound
    assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def _assert_normal(values, std):
    assert values.std() == pytest.approx(std, rel=0.02)
    assert abs(values.mean()) < 0.02 * std
    # Normal tails: about 4.6% of draws beyond 2 std (a uniform has none).
    assert np.mean(np.abs(values) > 2 * std) == pytest.approx(0.0455, abs=0.005)


@pytest.mark.parametrize(
    "nonlinearity,param,expected",
    [("linear", None, 1.0), ("conv2d", None, 1.0), ("conv_transpose2d", None, 1.0), ("sigmoid", None, 1.0),
     ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
     ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)), ("selu", None, 0.75)],
)
def test_calculate_gain(torch, nonlinearity, param, expected):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected)
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param)
    )


def test_calculate_gain_rejects_unknown():
    with pytest.raises(ValueError, match="swish"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_and_normal(dtype):
    v = _draw(init.uniform_, -2.0, 3.0, dtype=dtype)
    assert v.min() >= -2 and v.max() <= 3 and v.mean() == pytest.approx(0.5, abs=0.02)
    v = _draw(init.normal_, 1.0, 0.5, dtype=dtype)
    assert v.mean() == pytest.approx(1.0, abs=0.01) and v.std() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("mode,fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT)])
@pytest.mark.parametrize("nonlinearity,a,gain", [("relu", 0, math.sqrt(2)), ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)),
                                                 ("leaky_relu", 0.1, math.sqrt(2 / 1.01)), ("tanh", 0, 5 / 3)])
def test_kaiming(mode, fan, nonlinearity, a, gain):
    # std = gain / sqrt(fan); the uniform's bound is sqrt(3) * std.
    std = gain / math.sqrt(fan)
    _assert_uniform(_draw(init.kaiming_uniform_, a=a, mode=mode, nonlinearity=nonlinearity), math.sqrt(3) * std)
    _assert_normal(_draw(init.kaiming_normal_, a=a, mode=mode, nonlinearity=nonlinearity), std)


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_xavier(gain):
    std = gain * math.sqrt(2 / (FAN_IN + FAN_OUT))
    _assert_uniform(_draw(init.xavier_uniform_, gain=gain), math.sqrt(3) * std)
    _assert_normal(_draw(init.xavier_normal_, gain=gain), std)


def test_fans_of_a_linear_weight():
    # (out, in): fan_in = in, fan_out = out.
    std = 1 / math.sqrt(300)
    v = _draw(init.kaiming_normal_, shape=(200, 300), nonlinearity="linear")
    assert v.std() == pytest.approx(std, rel=0.02)
    v = _draw(init.xavier_uniform_, shape=(200, 300))
    assert np.abs(v).max() == pytest.approx(math.sqrt(6 / 500), rel=1e-3)


def test_trunc_normal():
    from scipy import stats

    v = _draw(init.trunc_normal_, mean=0.5, std=2.0, a=-1.0, b=3.0)
    assert v.min() >= -1.0 and v.max() <= 3.0
    ref = stats.truncnorm((-1.0 - 0.5) / 2.0, (3.0 - 0.5) / 2.0, loc=0.5, scale=2.0)
    assert v.mean() == pytest.approx(ref.mean(), abs=0.02)
    assert v.std() == pytest.approx(ref.std(), rel=0.02)
    # Kolmogorov-Smirnov against the exact truncated normal.
    assert stats.kstest(v.ravel()[:20000], ref.cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(np.zeros(3), a=1.0, b=0.0)


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (8, 2, 3, 3)])
def test_orthogonal(shape):
    v = _draw(init.orthogonal_, gain=2.0, shape=shape).reshape(shape[0], -1)
    rows, cols = v.shape
    gram = v @ v.T if rows <= cols else v.T @ v
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(rows, cols)), atol=1e-5)
    with pytest.raises(ValueError, match="2 or more"):
        init.orthogonal_(np.zeros(3))


def test_deterministic_fills_match_torch(torch):
    for fn in ("zeros_", "ones_", "eye_"):
        ours = getattr(init, fn)(np.full((3, 4), 7.0, np.float32))
        theirs = getattr(torch.nn.init, fn)(torch.full((3, 4), 7.0))
        np.testing.assert_array_equal(ours, theirs.numpy())
    np.testing.assert_array_equal(init.constant_(np.zeros(4), 0.3), torch.nn.init.constant_(torch.zeros(4, dtype=torch.float64), 0.3).numpy())
    for shape, groups in [((4, 4, 3, 3), 1), ((6, 2, 3, 3), 2), ((5, 3, 2, 4), 1)]:
        ours = init.dirac_(np.full(shape, 9.0, np.float32), groups)
        theirs = torch.nn.init.dirac_(torch.full(shape, 9.0), groups)
        np.testing.assert_array_equal(ours, theirs.numpy())


def test_seeding_generator_and_in_place():
    a = _draw(init.kaiming_uniform_)
    b = _draw(init.kaiming_uniform_)
    np.testing.assert_array_equal(a, b)
    arr = np.zeros((4, 5), np.float32)
    t = atrous.Tensor(arr)
    init.normal_(t, generator=np.random.default_rng(1))
    assert t.data is arr and arr.std() > 0
    np.testing.assert_array_equal(arr, np.random.default_rng(1).standard_normal(size=(4, 5), dtype=np.float32))


def test_init_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.kaiming_uniform_(np.zeros(5))
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_normal_(np.zeros((2, 2)), mode="fan_avg")
    with pytest.raises(TypeError, match="Tensor"):
        init.ones_([1, 2])


@pytest.mark.parametrize(
    "layer,fan_in",
    [(lambda: nn.Conv2d(64, 128, 3), 64 * 9), (lambda: nn.Conv2d(64, 128, (3, 5), groups=4), 16 * 15),
     (lambda: nn.ConvTranspose2d(64, 128, 3), 128 * 9), (lambda: nn.Linear(500, 300), 500)],
    ids=["conv", "grouped-conv", "conv-transpose", "linear"],
)
def test_default_init_is_torchs_reset_parameters(torch, layer, fan_in):
    # kaiming_uniform_(a=sqrt(5)): bound = sqrt(3) * sqrt(2 / (1 + 5)) / sqrt(fan_in) = 1 / sqrt(fan_in);
    # the bias is U(+-1/sqrt(fan_in)) too (ConvTranspose2d's fan_in comes from weight dims 1.., as torch).
    atrous.manual_seed(0)
    m = layer()
    bound = 1 / math.sqrt(fan_in)
    _assert_uniform(m.weight.data.astype(np.float64), bound)
    assert np.abs(m.bias.data).max() <= bound
    assert m.weight.dtype == np.float32
    # torch's own layer, built with the same arguments, draws with the same bound.
    if isinstance(m, nn.Linear):
        theirs = torch.nn.Linear(m.in_features, m.out_features)
    else:
        theirs = getattr(torch.nn, type(m).__name__)(m.in_channels, m.out_channels, m.kernel_size, groups=m.groups)
    assert theirs.weight.shape == m.weight.shape
    assert theirs.weight.abs().max().item() == pytest.approx(bound, rel=2e-3)


def test_seeded_construction_is_reproducible():
    atrous.manual_seed(3)
    a = nn.Conv2d(3, 8, 3)
    atrous.manual_seed(3)
    b = nn.Conv2d(3, 8, 3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, nn.Conv2d(3, 8, 3).weight.data)


def test_other_default_inits():
    bn = nn.BatchNorm2d(4)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_mean.data, 0)
    np.testing.assert_array_equal(bn.running_var.data, 1)
    assert bn.num_batches_tracked.item() == 0
    np.testing.assert_array_equal(nn.PReLU(3, init=0.1).weight.data, np.float32(0.1))
