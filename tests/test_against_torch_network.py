"""A whole network against PyTorch: conv-BN-ReLU-maxpool-conv-BN-ReLU-adaptive-avgpool-linear.

The same tree is built in atrous and in torch, torch's state dict is loaded into atrous as
NumPy arrays, and then logits, loss, every parameter gradient and the BN running statistics
must agree, in train and eval mode, and again after 5 plain SGD steps on the same batches.
"""
import numpy as np
import pytest

from atrous import nn

N, C, H, W, CLASSES = 4, 3, 12, 10, 5
LR = 0.1


def build(lib):
    """The network, written once for either ``atrous.nn`` or ``torch.nn``."""

    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(
                lib.Conv2d(C, 8, 3, padding=1),
                lib.BatchNorm2d(8),
                lib.ReLU(),
                lib.MaxPool2d(2),
                lib.Conv2d(8, 16, 3, padding=1, bias=False),
                lib.BatchNorm2d(16, momentum=0.2),
                lib.ReLU(),
            )
            self.pool = lib.AdaptiveAvgPool2d((1, 1))
            self.flatten = lib.Flatten()
            self.classifier = lib.Linear(16, CLASSES)

        def forward(self, x):
            return self.classifier(self.flatten(self.pool(self.features(x))))

    return Net()


def _tolerance(dtype):
    return 1e-10 if dtype == np.float64 else 1e-4


def _close(ours, theirs, rtol, what, scale=None):
    """|ours - theirs| <= rtol * (|theirs| + 1e-2 * scale), scale = max|theirs| unless given:
    relative, with a floor for entries that cancel to nearly zero."""
    theirs = np.asarray(theirs, dtype=np.float64)
    ours = np.asarray(ours, dtype=np.float64)
    if scale is None:
        scale = np.abs(theirs).max() if theirs.size else 0.0
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * 1e-2 * scale, err_msg=what)


@pytest.fixture
def pair(torch, request):
    dtype = request.param
    torch.manual_seed(0)
    theirs = build(torch.nn)
    with torch.no_grad():
        # Non-trivial BN affine parameters and running statistics, so eval mode means something.
        for bn in (theirs.features[1], theirs.features[5]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    ours = build(nn)
    if dtype == np.float64:
        theirs.double()
        ours.double()
    result = ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert list(ours.state_dict()) == list(theirs.state_dict())
    return ours, theirs, dtype


def _batch(seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y = rng.integers(0, CLASSES, size=N)
    return x, y


def _step(torch, ours, theirs, x, y):
    """One forward and backward on both; returns (our logits, loss), (torch's logits, loss)."""
    logits = ours(x)
    loss = nn.CrossEntropyLoss()(logits, y)
    loss.backward()
    t_logits = theirs(torch.from_numpy(x))
    t_loss = torch.nn.CrossEntropyLoss()(t_logits, torch.from_numpy(y))
    t_loss.backward()
    return (logits, loss), (t_logits, t_loss)


def _compare_everything(ours, theirs, rtol, outputs, t_outputs):
    (logits, loss), (t_logits, t_loss) = outputs, t_outputs
    _close(logits.numpy(), t_logits.detach().numpy(), rtol, "logits")
    _close(loss.item(), t_loss.item(), rtol, "loss")
    t_params = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(t_params)
    # In train mode the conv bias in front of a BN has an exactly zero gradient (BN subtracts
    # the batch mean), so both sides hold rounding noise there: gradients are compared
    # relative to the largest gradient in the network.
    scale = max(float(t.grad.abs().max()) for t in t_params.values())
    for name, p in ours.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert p.grad.dtype == p.dtype and p.grad.shape == p.shape
        _close(p.grad, t_params[name].grad.numpy(), rtol, f"grad of {name}", scale)
    t_state = theirs.state_dict()
    for name, v in ours.state_dict().items():
        if v.dtype == np.int64:
            assert int(v) == int(t_state[name]), name
        else:
            _close(v, t_state[name].numpy(), rtol, name)


@pytest.mark.parametrize("pair", [np.float32, np.float64], indirect=True, ids=["float32", "float64"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_logits_loss_gradients_and_running_stats(torch, pair, mode):
    ours, theirs, dtype = pair
    getattr(ours, mode)()
    getattr(theirs, mode)()
    x, y = _batch(1, dtype)
    stats_before = {k: v.copy() for k, v in ours.state_dict().items() if "running" in k}
    outputs, t_outputs = _step(torch, ours, theirs, x, y)
    assert outputs[0].dtype == dtype and outputs[0].shape == (N, CLASSES)
    _compare_everything(ours, theirs, _tolerance(dtype), outputs, t_outputs)
    stats_after = {k: v for k, v in ours.state_dict().items() if "running" in k}
    moved = [not np.array_equal(stats_before[k], stats_after[k]) for k in stats_before]
    # Train mode updates every running statistic; eval mode leaves them alone.
    assert all(moved) if mode == "train" else not any(moved)
    assert ours.features[1].num_batches_tracked.item() == (1 if mode == "train" else 0)


@pytest.mark.parametrize("pair", [np.float32, np.float64], indirect=True, ids=["float32", "float64"])
def test_five_sgd_steps_track_torch(torch, pair):
    ours, theirs, dtype = pair
    ours.train()
    theirs.train()
    initial = {k: v.copy() for k, v in ours.state_dict().items()}
    for step in range(5):
        x, y = _batch(10 + step, dtype)
        outputs, t_outputs = _step(torch, ours, theirs, x, y)
        _close(outputs[1].item(), t_outputs[1].item(), _tolerance(dtype), f"loss at step {step}")
        for p in ours.parameters():
            p.data -= LR * p.grad
        with torch.no_grad():
            for p in theirs.parameters():
                p -= LR * p.grad
        ours.zero_grad()
        theirs.zero_grad()
        assert all(p.grad is None for p in ours.parameters())
    t_state = theirs.state_dict()
    for name, v in ours.state_dict().items():
        assert v.dtype == initial[name].dtype and v.shape == initial[name].shape, name
        change = np.abs(v.astype(np.float64) - initial[name]).max()
        if name == "features.0.bias":
            # Its gradient is zero in train mode (BN removes any per-channel shift).
            assert change < 1e-6, name
        else:
            # Everything else moved, so this is not a comparison of untouched copies.
            assert change > 1e-3, f"{name} did not change"
        if v.dtype == np.int64:
            assert int(v) == int(t_state[name]) == 5, name
        else:
            _close(v, t_state[name].numpy(), _tolerance(dtype), f"{name} after 5 steps")
    x, y = _batch(99, dtype)
    ours.eval()
    theirs.eval()
    _close(ours(x).numpy(), theirs(torch.from_numpy(x)).detach().numpy(), _tolerance(dtype), "eval logits after training")
