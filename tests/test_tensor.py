"""The core: Tensor arithmetic, reductions, shape ops and indexing, and the autograd engine
(accumulation, broadcasting, non-scalar backward, no_grad, deep graphs, dtypes), checked
against PyTorch, plain NumPy references and float64 finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import atrous
from atrous import Tensor, no_grad
from gradcheck import check_gradients

FLOATS = [np.float32, np.float64]


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def compare(torch, ours_fn, torch_fn, arrays, dtype, seed=0):
    """Run ours_fn on Tensors and torch_fn on torch tensors, with the same upstream gradient;
    compare outputs, dtypes and every input's gradient."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(np.array(a), requires_grad=True) for a in arrays]
    out, ref = ours_fn(*ours), torch_fn(*theirs)
    assert out.shape == tuple(ref.shape)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **tol(dtype))
    G = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
    out.backward(G)
    ref.backward(torch.tensor(G))
    for t, r in zip(ours, theirs):
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        np.testing.assert_allclose(t.grad, r.grad.numpy(), **tol(dtype))


# ----- arithmetic with broadcasting ---------------------------------------------------------
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}


@settings(max_examples=150)
@given(
    st.sampled_from(sorted(BINARY)),
    mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
    st.sampled_from(FLOATS),
    st.integers(0, 99),
)
def test_binary_ops_broadcast_like_torch(torch, op, shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    if op == "div":  # keep the divisor away from 0
        b = (np.sign(b) + (b == 0)) * (0.5 + np.abs(b)).astype(dtype)
    if op == "pow":  # positive base, so the exponent's gradient (log a) is real
        a = (0.5 + np.abs(a)).astype(dtype)
    f = BINARY[op]
    compare(torch, f, f, [a, b], dtype, seed)


def test_broadcast_gradients_sum_over_expanded_axes():
    a = Tensor(np.arange(3, dtype=np.float32).reshape(3, 1), requires_grad=True)
    b = Tensor(np.arange(4, dtype=np.float32).reshape(1, 4), requires_grad=True)
    (a + b).backward(np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(a.grad, np.full((3, 1), 4))  # each row element fed 4 sums
    np.testing.assert_array_equal(b.grad, np.full((1, 4), 3))
    s = Tensor(np.float32(2.0), requires_grad=True)  # 0-d tensor broadcast over a matrix
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    (s * w).sum().backward()
    assert s.grad.shape == () and s.grad == w.sum()


@pytest.mark.parametrize("dtype", FLOATS)
def test_python_and_numpy_operands_on_either_side(torch, dtype):
    x = np.array([[0.5, 1.5, 2.0], [1.0, 3.0, 0.25]], dtype)
    c = np.array([2.0, -1.0, 0.5], dtype)
    for ours, theirs in [
        (lambda t: 2 - t, lambda t: 2 - t),
        (lambda t: 3.0 / t, lambda t: 3.0 / t),
        (lambda t: c / t, lambda t: torch.tensor(c) / t),
        (lambda t: c * t + 1, lambda t: torch.tensor(c) * t + 1),
        (lambda t: 2.0**t, lambda t: 2.0**t),
        (lambda t: t**2 - t**0.5, lambda t: t**2 - t**0.5),
        (lambda t: -t, lambda t: -t),
        (lambda t: (-(t * t)).exp().log(), lambda t: (-(t * t)).exp().log()),
    ]:
        compare(torch, ours, theirs, [x], dtype)


def test_pow_with_a_tensor_exponent_and_zero_base(torch):
    # d/db a^b = a^b log a is 0 where a == 0 and b >= 0 in PyTorch (no nan), and d/da a^0 = 0.
    a = np.array([0.0, 0.0, 1.5, 2.0])
    b = np.array([2.0, 0.0, 0.0, -1.5])
    compare(torch, lambda x, y: x**y, lambda x, y: x**y, [a, b], np.float64)


@pytest.mark.parametrize(
    "sa,sb",
    [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
     ((5, 2, 3), (1, 3, 4)), ((2, 1, 2, 3), (3, 3, 2)), ((4, 3), (2, 3, 5))],
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_matmul_like_torch(torch, sa, sb, dtype):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    compare(torch, lambda x, y: x @ y, lambda x, y: x @ y, [a, b], dtype)


def test_matmul_with_a_constant_on_the_left():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    (w @ x).sum().backward()
    # d/dx sum(W x) = W^T 1: each column of x gets the column sums of W.
    np.testing.assert_array_equal(x.grad, np.repeat(w.sum(0)[:, None], 4, axis=1))


# ----- reductions ---------------------------------------------------------------------------
@st.composite
def reduction_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    nd = len(shape)
    axis = draw(
        st.one_of(
            st.none(),
            st.integers(-nd, nd - 1),
            st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple),
        )
    )
    return shape, axis, draw(st.booleans()), draw(st.sampled_from(FLOATS)), draw(st.integers(0, 99))


@settings(max_examples=150)
@given(st.sampled_from(["sum", "mean", "max"]), reduction_cases())
def test_reductions_like_torch(torch, op, case):
    shape, axis, keepdims, dtype, seed = case
    rng = np.random.default_rng(seed)
    # Small integers make ties common: max splits the gradient between tied maxima, as amax.
    x = rng.integers(-2, 3, size=shape).astype(dtype) if op == "max" else rng.standard_normal(shape).astype(dtype)
    dims = tuple(range(len(shape))) if axis is None else axis

    def theirs(t):
        if op == "max":
            return t.amax(dim=dims, keepdim=keepdims)
        return getattr(t, op)(dim=dims, keepdim=keepdims)

    compare(torch, lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), theirs, [x], dtype, seed)


def test_reductions_plain_reference():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    t = Tensor(x, requires_grad=True)
    assert t.sum(axis=(0, 2)).data.tolist() == [sum(x[i, j, k] for i in range(2) for k in range(4)) for j in range(3)]
    assert t.mean(axis=1, keepdims=True).shape == (2, 1, 4)
    assert t.max().item() == 23
    t.mean().backward()
    np.testing.assert_allclose(t.grad, np.full(x.shape, 1 / 24))
    y = Tensor(np.array([1.0, 5.0, 5.0, 2.0]), requires_grad=True)
    y.max().backward()
    np.testing.assert_array_equal(y.grad, [0, 0.5, 0.5, 0])  # tied maxima share the gradient


# ----- shape ops and indexing ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_reshape_transpose_flatten_like_torch(torch, dtype):
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(dtype)
    cases = [
        (lambda t: t.reshape(4, -1), lambda t: t.reshape(4, -1)),
        (lambda t: t.reshape((6, 4)) * 2, lambda t: t.reshape((6, 4)) * 2),
        (lambda t: t.view(3, 8), lambda t: t.view(3, 8)),
        (lambda t: t.transpose(), lambda t: t.permute(2, 1, 0)),
        (lambda t: t.transpose(1, 0, 2), lambda t: t.permute(1, 0, 2)),
        (lambda t: t.permute(2, 0, 1) * 1.5, lambda t: t.permute(2, 0, 1) * 1.5),
        (lambda t: t.reshape(6, 4).T @ t.reshape(6, 4), lambda t: t.reshape(6, 4).T @ t.reshape(6, 4)),
        (lambda t: t.flatten(), lambda t: t.flatten()),
        (lambda t: t.flatten(1), lambda t: t.flatten(1)),
        (lambda t: t.flatten(0, 1), lambda t: t.flatten(0, 1)),
        (lambda t: t.flatten(-2), lambda t: t.flatten(-2)),
    ]
    for ours, theirs in cases:
        compare(torch, ours, theirs, [x], dtype)


def test_tensor_flatten_rejects_start_after_end():
    with pytest.raises(ValueError, match="flatten: start_dim=2 comes after end_dim=1"):
        Tensor(np.zeros((2, 3, 4), np.float32)).flatten(2, 1)


INDEXES = [
    (1,),
    (slice(None), 2),
    (slice(1, None), slice(None, None, 2)),
    (Ellipsis, 1),
    (None, 0, slice(1, 3)),
    (np.array([0, 0, 1, 0]),),  # repeated rows: their gradients add up
    (slice(None), np.array([2, 2, 2, 0])),
    (np.array([0, 1, 1]), np.array([3, 3, 3])),  # the same element three times
    (np.array([[1, 0], [1, 1]]), slice(None), 0),
    (np.array([True, False]),),
]


@pytest.mark.parametrize("index", INDEXES, ids=lambda i: repr(i)[:40])
def test_indexing_like_torch(torch, index):
    x = np.random.default_rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    their_index = tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in index)
    compare(torch, lambda t: t[index] * 2, lambda t: t[their_index] * 2, [x], np.float32)


def test_fancy_indexing_gradient_plain_reference():
    # A scatter-add written out: every pick of element (i, j) adds its upstream gradient there.
    x = Tensor(np.zeros((3, 4)), requires_grad=True)
    rows, cols = np.array([0, 2, 0, 0, 1]), np.array([1, 3, 1, 1, 0])
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    x[rows, cols].backward(g)
    expected = np.zeros((3, 4))
    for r, c, v in zip(rows, cols, g):
        expected[r, c] += v
    np.testing.assert_array_equal(x.grad, expected)
    y = Tensor(np.arange(5.0), requires_grad=True)
    y[::-2].backward(np.array([1.0, 2.0, 3.0]))  # negative step (NumPy semantics; torch has none)
    np.testing.assert_array_equal(y.grad, [3, 0, 2, 0, 1])
    z = Tensor(np.arange(4.0), requires_grad=True)
    z[Tensor(np.array([3, 3]))].sum().backward()  # an index given as a Tensor
    np.testing.assert_array_equal(z.grad, [0, 0, 0, 2])


# ----- the autograd engine ------------------------------------------------------------------
def test_tensor_used_twice_accumulates(torch):
    # Residual block shape: y = x + f(x); and a diamond where both paths meet again.
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    compare(torch, lambda t: t + (t * t).exp() * 0.1, lambda t: t + (t * t).exp() * 0.1, [x], np.float64)
    compare(torch, lambda t: (t * 2) * (t * 3) + t, lambda t: (t * 2) * (t * 3) + t, [x], np.float64)
    t = Tensor(x, requires_grad=True)
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad, 2 * x)


def test_backward_needs_gradient_for_non_scalars():
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = x * 3
    with pytest.raises(RuntimeError, match=r"grad can be implicitly created only for scalar outputs, got shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"):
        y.backward(np.ones(3, np.float32))
    y.backward(np.full((2, 3), 2.0, np.float32))
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 6.0))
    assert x.grad.dtype == np.float32
    (x.sum() * 1).backward()  # a size-1 result needs no gradient
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 7.0))


def test_backward_errors_without_a_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2, np.float32)).sum().backward()
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_grad_accumulates_over_backward_calls(torch):
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    tx = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    for _ in range(2):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy())
    np.testing.assert_allclose(x.grad, [4.0, 8.0, 12.0])
    x.grad = None  # what zero_grad does
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0, 5.0])


def test_intermediate_grads_only_with_retain_grad():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3
    h.retain_grad()
    k = h * 2
    (k * k).sum().backward()
    np.testing.assert_allclose(h.grad, 8 * x.data * 3)  # d/dh (2h)^2 = 8h
    assert k.grad is None and not k.is_leaf and x.is_leaf and k.grad_fn is not None


def test_no_grad_and_detach():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    with no_grad():
        y = x * 2
        assert not atrous.is_grad_enabled()
    assert atrous.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None

    @no_grad()
    def step(t):
        return t * 2

    assert not step(x).requires_grad
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, x.data)  # detach shares storage, as PyTorch
    z = (x * d).sum()  # no gradient flows through the detached factor
    z.backward()
    np.testing.assert_array_equal(x.grad, d.data)


@pytest.mark.parametrize("depth", [500, 5000])
def test_deep_chain_has_no_recursion_limit(depth):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x
    for _ in range(depth):
        h = h * 1.001 + 0.5
    h.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, 1.001**depth), rtol=1e-10)
    del h  # freeing a deep graph must not overflow the C stack either


@pytest.mark.parametrize("dtype", FLOATS)
def test_dtypes_are_preserved(dtype):
    x = Tensor(np.ones((2, 3), dtype) * 0.5, requires_grad=True)
    y = (x * 2 + 1 - 0.5) / 3.0
    y = (y**2).exp().log() @ Tensor(np.ones((3, 2), dtype)) + 1.5 ** x.sum(axis=1, keepdims=True)
    y = -y.reshape(4).transpose()[1:].max() + y.mean()
    assert y.dtype == dtype
    y.backward()
    assert x.grad.dtype == dtype


def test_float32_leaf_keeps_float32_grad_next_to_float64_constants(torch):
    # As in PyTorch, combining with a float64 constant promotes the result, but the gradient
    # stored on a float32 leaf stays float32 (an optimizer must not promote its parameter).
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    c = np.array([1.0, 2.0, 3.0])
    out = x * c
    assert out.dtype == np.float64
    out.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, c)


def test_python_floats_become_float32():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert atrous.tensor(3.0).dtype == np.float32
    assert Tensor(np.array([1.0])).dtype == np.float64  # arrays keep their dtype
    assert Tensor([1, 2]).dtype.kind == "i"


# ----- finite differences -------------------------------------------------------------------
def test_composite_expression_gradcheck():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 4))
    b = 0.5 + rng.random((1, 4))
    w = rng.standard_normal((4, 2))

    def f(x, y, z):
        h = (x * y - x / y + y**x.mean()) @ z  # broadcasting, tensor exponent, matmul
        h = h + x[np.array([0, 0, 2])].sum(axis=0, keepdims=True)[:, :2]  # repeated rows
        return h.exp().mean(axis=0) * h.max(axis=1, keepdims=True).reshape(3, 1) - (-h).T.sum()

    check_gradients(f, a, b, w)


def test_elementwise_gradcheck():
    x = 0.5 + np.random.default_rng(5).random((2, 3))
    check_gradients(lambda t: (t**3 + 2**t + 1 / t).log() * t.transpose().T, x)
