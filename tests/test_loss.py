"""cross_entropy, nll_loss, mse_loss: loop references, PyTorch on random cases, finite differences."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients

# ----- plain references ------------------------------------------------------------------------


def _elements(x, target):
    """(logit row, class) for every sample/pixel: x (N, C, *) or (C,), target (N, *) or ()."""
    if x.ndim == 1:
        yield [float(v) for v in x], int(target)
        return
    for idx in np.ndindex(target.shape):
        row = [float(x[(idx[0], c) + idx[1:]]) for c in range(x.shape[1])]
        yield row, int(target[idx])


def loop_cross_entropy(x, target, weight, ignore_index, reduction, eps):
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = [1.0] * C if weight is None else [float(v) for v in weight]
    losses, denom = [], 0.0
    for row, t in _elements(x, target):
        if t == ignore_index:
            losses.append(0.0)
            continue
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        logp = [v - lse for v in row]
        nll = -w[t] * logp[t]
        smooth = -sum(w[c] * logp[c] for c in range(C))
        losses.append((1 - eps) * nll + eps / C * smooth)
        denom += w[t]
    if reduction == "none":
        return np.array(losses).reshape(np.shape(target))
    total = sum(losses)
    return total if reduction == "sum" else (total / denom if denom else math.nan)


def loop_nll(x, target, weight, ignore_index, reduction):
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = [1.0] * C if weight is None else [float(v) for v in weight]
    losses, denom = [], 0.0
    for row, t in _elements(x, target):
        losses.append(0.0 if t == ignore_index else -w[t] * row[t])
        denom += 0.0 if t == ignore_index else w[t]
    if reduction == "none":
        return np.array(losses).reshape(np.shape(target))
    return sum(losses) if reduction == "sum" else sum(losses) / denom


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_loop_reference(rng, reduction, eps, weighted):
    x = rng.standard_normal((3, 4, 2, 3)) * 3
    target = rng.integers(0, 4, (3, 2, 3))
    target[0, 1, 2] = target[2, 0, 0] = -100
    weight = rng.uniform(0.2, 2.0, 4) if weighted else None
    got = F.cross_entropy(x, target, weight, reduction=reduction, label_smoothing=eps).numpy()
    ref = loop_cross_entropy(x, target, weight, -100, reduction, eps)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    # (N, C) and unbatched (C,) inputs too
    x2, t2 = x[:, :, 0, 0], target[:, 0, 0]
    np.testing.assert_allclose(
        F.cross_entropy(x2, t2, weight, reduction=reduction, label_smoothing=eps).numpy(),
        loop_cross_entropy(x2, t2, weight, -100, reduction, eps), rtol=1e-12, atol=1e-14,
    )
    np.testing.assert_allclose(
        F.cross_entropy(x2[1], t2[1], weight, reduction=reduction, label_smoothing=eps).numpy(),
        loop_cross_entropy(x2[1], t2[1], weight, -100, reduction, eps), rtol=1e-12,
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_and_mse_match_loop_reference(rng, reduction):
    x = rng.standard_normal((4, 3, 5))
    target = rng.integers(0, 3, (4, 5))
    target[1, 1] = 1  # ignore_index=1 below drops every 1
    weight = rng.uniform(0.5, 1.5, 3)
    got = F.nll_loss(x, target, weight, ignore_index=1, reduction=reduction).numpy()
    np.testing.assert_allclose(got, loop_nll(x, target, weight, 1, reduction), rtol=1e-12)
    y = rng.standard_normal((4, 3, 5))
    sq = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        sq[idx] = (x[idx] - y[idx]) ** 2
    ref = {"none": sq, "sum": sq.sum(), "mean": sq.sum() / sq.size}[reduction]
    np.testing.assert_allclose(F.mse_loss(x, y, reduction=reduction).numpy(), ref, rtol=1e-12)


def test_cross_entropy_equals_composed_log_softmax_nll(rng):
    """The fused op against its composition, values and gradients."""
    x = rng.standard_normal((5, 4, 3))
    target = rng.integers(0, 4, (5, 3))
    target[0, 0] = -100
    weight = rng.uniform(0.5, 2.0, 4)
    a, b = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    la = F.cross_entropy(a, target, weight)
    lb = F.nll_loss(F.log_softmax(b, 1), target, weight)
    la.backward()
    lb.backward()
    np.testing.assert_allclose(la.numpy(), lb.numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4]], np.float32)
    loss = F.cross_entropy(Tensor(x, requires_grad=True), np.array([1]))
    np.testing.assert_allclose(loss.numpy(), 1e4, rtol=1e-6)


def test_all_targets_ignored_gives_nan_and_zero_gradient():
    x = Tensor(np.zeros((2, 3)), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 either
        loss = F.cross_entropy(x, np.array([-100, -100]), label_smoothing=0.1)
        loss.backward()
    assert math.isnan(loss.item())
    np.testing.assert_array_equal(x.grad, np.zeros((2, 3)))


# ----- differential tests against PyTorch -------------------------------------------------------


@st.composite
def class_cases(draw):
    ndim = draw(st.sampled_from([1, 2, 2, 3, 4]))
    C = draw(st.integers(1, 6))
    N = draw(st.integers(2, 4))
    spatial = [draw(st.integers(1, 3)) for _ in range(max(ndim - 2, 0))]
    shape = (C,) if ndim == 1 else (N, C, *spatial)
    tshape = () if ndim == 1 else (N, *spatial)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dt = draw(st.sampled_from([np.float32, np.float64]))
    x = (rng.standard_normal(shape) * draw(st.sampled_from([1.0, 5.0]))).astype(dt)
    if draw(st.booleans()) and ndim > 1:  # non-contiguous: class axis moved in from the end
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    ignore_index = draw(st.sampled_from([-100, 0, C - 1, 7]))
    target = rng.integers(0, C, tshape)
    if draw(st.booleans()):
        target = np.where(rng.random(tshape) < 0.3, ignore_index, target)
    weight = rng.uniform(0.1, 2.0, C).astype(dt) if draw(st.booleans()) else None
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return x, np.asarray(target, np.int64), weight, ignore_index, reduction, rng


def _tol(dt):
    return dict(rtol=2e-5, atol=2e-6) if dt == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _compare(torch, ours, theirs, x, rng):
    xa, xt = Tensor(x, requires_grad=True), torch.from_numpy(x.copy()).requires_grad_()
    out, ref = ours(xa), theirs(xt)
    g = rng.standard_normal(ref.shape).astype(x.dtype)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    assert out.dtype == x.dtype and out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **_tol(x.dtype))
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), **_tol(x.dtype))


@settings(max_examples=150)
@given(class_cases(), st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
def test_cross_entropy_matches_torch(torch, case, eps):
    x, target, weight, ignore_index, reduction, rng = case
    tw = None if weight is None else torch.from_numpy(weight)
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    _compare(
        torch,
        lambda t: F.cross_entropy(t, target, weight, **kw),
        lambda t: torch.nn.functional.cross_entropy(t, torch.from_numpy(target), tw, **kw),
        x, rng,
    )


@settings(max_examples=100)
@given(class_cases())
def test_nll_loss_matches_torch(torch, case):
    x, target, weight, ignore_index, reduction, rng = case
    tw = None if weight is None else torch.from_numpy(weight)
    kw = dict(ignore_index=ignore_index, reduction=reduction)
    _compare(
        torch,
        lambda t: F.nll_loss(t, target, weight, **kw),
        lambda t: torch.nn.functional.nll_loss(t, torch.from_numpy(target), tw, **kw),
        x, rng,
    )


@settings(max_examples=100)
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4),
    st.sampled_from(["mean", "sum", "none"]),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from(["same", "broadcast", "weighted"]),
    st.integers(0, 2**31),
)
def test_mse_loss_matches_torch(torch, shape, reduction, dt, mode, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dt)
    tshape = list(shape)
    if mode == "broadcast":
        tshape[int(rng.integers(len(shape)))] = 1
    y = rng.standard_normal(tshape).astype(dt)
    w = rng.uniform(0.1, 2, shape).astype(dt) if mode == "weighted" else None
    arrays = [x, y] + ([w] if w is not None else [])
    ours = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.from_numpy(a.copy()).requires_grad_() for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broadcasting warning, on both sides
        out = F.mse_loss(ours[0], ours[1], reduction=reduction, weight=ours[2] if w is not None else None)
        ref = torch.nn.functional.mse_loss(
            theirs[0], theirs[1], reduction=reduction, weight=theirs[2] if w is not None else None
        )
    g = rng.standard_normal(tuple(ref.shape)).astype(dt)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **_tol(dt))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **_tol(dt))


# ----- finite differences (float64) ------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2), (5,)])
def test_gradcheck_cross_entropy(rng, reduction, shape):
    C = shape[1] if len(shape) > 1 else shape[0]
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    target = rng.integers(0, C, tshape)
    if len(shape) > 1:
        target.reshape(-1)[0] = -100
    weight = rng.uniform(0.5, 2.0, C)
    check_gradients(
        lambda x: F.cross_entropy(x, target, weight, reduction=reduction, label_smoothing=0.15),
        rng.standard_normal(shape) * 2,
    )


def test_gradcheck_nll_and_mse(rng):
    target = rng.integers(0, 3, (4, 2))
    check_gradients(lambda x: F.nll_loss(x, target, np.array([1.0, 0.5, 2.0])), rng.standard_normal((4, 3, 2)))
    for reduction in ("mean", "sum", "none"):
        check_gradients(
            lambda x, y, w: F.mse_loss(x, y, reduction=reduction, weight=w),
            rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.uniform(0.5, 2, (3, 4)),
        )


# ----- errors ----------------------------------------------------------------------------------------


def test_class_loss_errors_name_op_and_values():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"cross_entropy: target value 5 is out of range for C=4 classes"):
        F.cross_entropy(x, np.array([0, 5, 1]))
    with pytest.raises(ValueError, match=r"nll_loss: target value -1 is out of range for C=4"):
        F.nll_loss(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: target shape \(2,\) does not match input shape \(3, 4\); expected target shape \(3,\)"):
        F.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target shape \(3, 2\) does not match input shape \(3, 4, 5\)"):
        F.cross_entropy(np.zeros((3, 4, 5), np.float32), np.zeros((3, 2), np.int64))
    with pytest.raises(TypeError, match=r"cross_entropy: target must hold integer class indices, got dtype float32"):
        F.cross_entropy(x, np.array([0.0, 1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have shape \(4,\)"):
        F.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be"):
        F.cross_entropy(x, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be between"):
        F.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(TypeError, match="cross_entropy: input must be a floating-point"):
        F.cross_entropy(np.zeros((3, 4), np.int64), np.array([0, 1, 2]))


def test_mse_loss_errors_and_warning():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"mse_loss: target shape \(3, 5\) cannot be broadcast to input shape \(3, 4\)"):
        F.mse_loss(x, np.zeros((3, 5), np.float32))
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(x, np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"mse_loss: weight shape \(4,\) must equal input shape \(3, 4\)"):
        F.mse_loss(x, x, weight=np.ones(4, np.float32))


def test_legacy_size_average_and_reduce_map_onto_reduction(rng):
    x = rng.standard_normal((4, 3))
    t = np.array([0, 1, 2, 1])
    total = F.cross_entropy(x, t, reduction="sum").item()
    assert F.cross_entropy(x, t, size_average=False).item() == total
    np.testing.assert_array_equal(
        F.nll_loss(x, t, reduce=False).numpy(), F.nll_loss(x, t, reduction="none").numpy()
    )
