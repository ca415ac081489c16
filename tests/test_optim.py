"""Optimisers: PyTorch's update sequences, plain-loop references, state_dict, errors."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atrous import Tensor
from atrous.optim import SGD, Adam, AdamW, Optimizer

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 20


def make_values(seed, dtype, shapes=SHAPES):
    r = np.random.default_rng(seed)
    return [r.standard_normal(s).astype(dtype) for s in shapes]


def grad_sequence(seed, dtype, steps=STEPS, shapes=SHAPES, holes=()):
    """Fixed random gradients; (step, param) pairs in ``holes`` get None (the param is skipped)."""
    r = np.random.default_rng(seed + 1000)
    seq = []
    for t in range(steps):
        seq.append([None if (t, i) in holes else r.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)])
    return seq


def build_groups(tensors, groups):
    """``groups`` None: a plain list; else list of (param indices, options) pairs."""
    if groups is None:
        return list(tensors)
    return [dict(params=[tensors[i] for i in idx], **opts) for idx, opts in groups]


def run_atrous(cls, kwargs, values, grads, groups=None):
    params = [Tensor(v.copy(), requires_grad=True) for v in values]
    opt = cls(build_groups(params, groups), **kwargs)
    history = []
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = None if g is None else g.copy()
        opt.step()
        history.append([p.data.copy() for p in params])
    return opt, params, history


def run_torch(torch, name, kwargs, values, grads, groups=None):
    params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    cls = getattr(torch.optim, name)
    kwargs = dict(kwargs, foreach=False)  # the single-tensor implementation is the reference
    opt = cls(build_groups(params, groups), **kwargs)
    history = []
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return opt, params, history


def assert_close(a, b, dtype, msg):
    """Relative to the array's scale: PyTorch's CPU kernels fuse multiply-adds, so float32
    results differ in the last bits, and an element that cancels to near zero keeps only
    an absolute error of that size."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b), initial=0.0)), err_msg=msg)


def assert_same_run(ours, theirs, dtype):
    for t, (a_step, b_step) in enumerate(zip(ours, theirs)):
        for i, (a, b) in enumerate(zip(a_step, b_step)):
            assert a.dtype == dtype
            assert_close(a, b, dtype, f"step {t}, param {i}")


def compare_with_torch(torch, name, kwargs, groups=None, dtype=np.float32, seed=0, holes=()):
    cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    values, grads = make_values(seed, dtype), grad_sequence(seed, dtype, holes=holes)
    opt, params, ours = run_atrous(cls, kwargs, values, grads, groups)
    topt, tparams, theirs = run_torch(torch, name, kwargs, values, grads, groups)
    assert_same_run(ours, theirs, dtype)
    # The state (buffers, moments, step counts) matches PyTorch's, under the same indices.
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for i, st_ in sd["state"].items():
        assert sorted(st_) == sorted(tsd["state"][i])
        for k, v in st_.items():
            tv = tsd["state"][i][k]
            if k == "step":
                assert v == tv.item()
            else:
                assert v.dtype == dtype
                assert_close(v, tv.numpy(), dtype, f"state {i} {k}")
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        assert g["params"] == tg["params"]
        for k, v in g.items():
            assert (list(tg[k]) if isinstance(tg[k], tuple) else tg[k]) == v, k


# ----- against PyTorch: fixed option combinations ----------------------------------------
SGD_CASES = [
    dict(lr=0.1),
    dict(),  # PyTorch's defaults (lr=1e-3)
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.5),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, maximize=True),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05, maximize=True),
    dict(lr=0.05, momentum=0.7, dampening=0.3, weight_decay=0.2),
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_matches_torch(torch, kwargs, dtype):
    compare_with_torch(torch, "SGD", kwargs, dtype=dtype)


ADAM_CASES = [
    dict(lr=0.01),
    dict(),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, maximize=True),
    dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3),
    dict(lr=0.01, betas=(0.0, 0.99), weight_decay=0.05, amsgrad=True, maximize=True),
]


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_torch(torch, name, kwargs, dtype):
    compare_with_torch(torch, name, kwargs, dtype=dtype)


@pytest.mark.parametrize(
    "name, defaults, groups",
    [
        ("SGD", dict(lr=0.1, momentum=0.9), [((0,), dict(lr=0.01, momentum=0.5)), ((1, 2), dict(nesterov=True))]),
        ("SGD", dict(lr=0.1), [((2, 0), dict(weight_decay=0.3, dampening=0.1, momentum=0.6)), ((1,), {})]),
        ("Adam", dict(lr=0.01), [((0, 1), dict(betas=(0.8, 0.95), amsgrad=True)), ((2,), dict(lr=0.1, weight_decay=0.2))]),
        ("AdamW", dict(lr=0.01), [((1,), dict(weight_decay=0.5)), ((0, 2), dict(maximize=True, eps=1e-4))]),
    ],
)
def test_param_groups_match_torch(torch, name, defaults, groups):
    compare_with_torch(torch, name, defaults, groups=groups)


@pytest.mark.parametrize(
    "name, kwargs",
    [("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2)), ("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01))],
)
def test_params_without_grad_are_skipped_like_torch(torch, name, kwargs):
    # Param 1 has no grad for its first three steps (its state starts late) and at step 10;
    # param 2 never gets one and must stay untouched.
    holes = {(0, 1), (1, 1), (2, 1), (10, 1)} | {(t, 2) for t in range(STEPS)}
    compare_with_torch(torch, name, kwargs, holes=holes)


# ----- against PyTorch: random configurations ----------------------------------------------
@settings(max_examples=30)
@given(
    lr=st.floats(1e-3, 1.0),
    momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    dampening=st.sampled_from([0.0, 0.1, 0.5]),
    nesterov=st.booleans(),
    weight_decay=st.sampled_from([0.0, 1e-4, 0.1]),
    maximize=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_sgd_random_configs_match_torch(torch, lr, momentum, dampening, nesterov, weight_decay, maximize, seed):
    nesterov = nesterov and momentum > 0 and dampening == 0
    kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay, maximize=maximize)
    compare_with_torch(torch, "SGD", kwargs, seed=seed)


@settings(max_examples=30)
@given(
    name=st.sampled_from(["Adam", "AdamW"]),
    lr=st.floats(1e-4, 0.1),
    beta1=st.sampled_from([0.0, 0.5, 0.9]),
    beta2=st.sampled_from([0.9, 0.99, 0.999]),
    eps=st.sampled_from([1e-8, 1e-6, 1e-3]),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.3]),
    amsgrad=st.booleans(),
    maximize=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_adam_random_configs_match_torch(torch, name, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, seed):
    kwargs = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    compare_with_torch(torch, name, kwargs, seed=seed)


# ----- independent plain references (no PyTorch) --------------------------------------------
def sgd_reference(x, grads, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """Element by element, in Python floats, straight from the update rule."""
    x = [float(v) for v in x]
    buf = None
    for g in grads:
        g = [(-v if maximize else v) + weight_decay * xi for v, xi in zip(map(float, g), x)]
        if momentum:
            if buf is None:
                buf = list(g)  # first step: the buffer is the gradient, no dampening
            else:
                buf = [momentum * b + (1 - dampening) * gi for b, gi in zip(buf, g)]
            g = [gi + momentum * b for gi, b in zip(g, buf)] if nesterov else buf
        x = [xi - lr * gi for xi, gi in zip(x, g)]
    return np.array(x)


def adam_reference(x, grads, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled):
    x = [float(v) for v in x]
    m = [0.0] * len(x)
    v = [0.0] * len(x)
    vmax = [0.0] * len(x)
    for t, g in enumerate(grads, start=1):
        g = list(map(float, g))
        if decoupled:
            x = [xi * (1 - lr * weight_decay) for xi in x]
        else:
            g = [gi + weight_decay * xi for gi, xi in zip(g, x)]
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g)]
        vmax = [max(a, b) for a, b in zip(vmax, v)]
        vv = vmax if amsgrad else v
        mhat = [mi / (1 - beta1**t) for mi in m]
        vhat = [vi / (1 - beta2**t) for vi in vv]
        x = [xi - lr * mh / (vh**0.5 + eps) for xi, mh, vh in zip(x, mhat, vhat)]
    return np.array(x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1, nesterov=False, maximize=False),
        dict(lr=0.05, momentum=0.8, dampening=0.0, weight_decay=0.0, nesterov=True, maximize=True),
        dict(lr=0.2, momentum=0.0, dampening=0.0, weight_decay=0.3, nesterov=False, maximize=False),
    ],
)
def test_sgd_matches_plain_reference(kwargs):
    x0 = make_values(3, np.float64, [(6,)])[0]
    grads = [g[0] for g in grad_sequence(3, np.float64, shapes=[(6,)])]
    p = Tensor(x0.copy(), requires_grad=True)
    opt = SGD([p], **kwargs)
    for g in grads:
        p.grad = g
        opt.step()
    np.testing.assert_allclose(p.data, sgd_reference(x0, grads, **kwargs), rtol=1e-12)


@pytest.mark.parametrize("cls, decoupled", [(Adam, False), (AdamW, True)])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_matches_plain_reference(cls, decoupled, amsgrad):
    x0 = make_values(4, np.float64, [(6,)])[0]
    grads = [g[0] * (1 + 2 * (t % 3)) for t, g in enumerate(grad_sequence(4, np.float64, shapes=[(6,)]))]
    p = Tensor(x0.copy(), requires_grad=True)
    opt = cls([p], lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1, amsgrad=amsgrad)
    for g in grads:
        p.grad = g
        opt.step()
    want = adam_reference(x0, grads, 0.05, 0.8, 0.9, 1e-6, 0.1, amsgrad, decoupled)
    np.testing.assert_allclose(p.data, want, rtol=1e-12)


# ----- in-place updates, dtype, grads ---------------------------------------------------
@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps), lambda ps: AdamW(ps)])
def test_update_is_in_place_and_keeps_dtype(make):
    arrays = [np.ones((2, 3), np.float32), np.ones(4, np.float64)]
    params = [Tensor(a, requires_grad=True) for a in arrays]
    opt = make(params)
    for p in params:
        grad = np.full(p.shape, 0.5, p.dtype)
        p.grad = grad
    grads_before = [p.grad.copy() for p in params]
    opt.step()
    for a, p, g0 in zip(arrays, params, grads_before):
        assert p.data is a  # modules holding the array see the update
        assert p.data.dtype == a.dtype
        assert np.all(p.data != 1.0)
        np.testing.assert_array_equal(p.grad, g0)  # the gradient itself is never modified
    for key, value in opt.state[params[0]].items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, key


def test_momentum_buffer_does_not_alias_grad():
    p = Tensor(np.zeros(3, np.float32), requires_grad=True)
    opt = SGD([p], lr=1.0, momentum=0.5)
    g = np.ones(3, np.float32)
    p.grad = g
    opt.step()
    opt.step()  # the buffer is updated in place on this step; g must not change
    np.testing.assert_array_equal(g, np.ones(3, np.float32))
    np.testing.assert_allclose(p.data, [-2.5, -2.5, -2.5])  # -1, then -(0.5 * 1 + 1)


def test_zero_grad():
    a, b = Tensor(np.ones(2, np.float32), requires_grad=True), Tensor(np.ones(3, np.float32), requires_grad=True)
    opt = SGD([a, b], lr=0.1)
    a.grad = np.ones(2, np.float32)
    b.grad = np.ones(3, np.float32)
    kept = b.grad
    opt.zero_grad(set_to_none=False)
    assert b.grad is kept and not kept.any()
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_step_returns_closure_value():
    p = Tensor(np.ones(2, np.float32), requires_grad=True)
    opt = Adam([p])
    assert opt.step(lambda: 3.5) == 3.5
    assert opt.step() is None


def test_named_parameters_are_accepted():
    a, b = Tensor(np.ones(2, np.float32), requires_grad=True), Tensor(np.ones(3, np.float32), requires_grad=True)
    opt = SGD([("w", a), ("b", b)], lr=0.1)
    assert opt.param_groups[0]["params"][1] is b
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


# ----- state_dict --------------------------------------------------------------------------
OPTIMIZERS = [
    ("SGD", lambda g: SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("SGD-groups", lambda g: SGD([{"params": g[:1], "lr": 0.5}, {"params": g[1:], "momentum": 0.8}], lr=0.1)),
    ("Adam", lambda g: Adam(g, lr=0.01, amsgrad=True)),
    ("AdamW", lambda g: AdamW([{"params": g[:2]}, {"params": g[2:], "betas": (0.5, 0.9)}], lr=0.01)),
]


def check_plain(obj, path="state_dict"):
    """Only dicts, lists, str, numbers and NumPy arrays: writable without pickle."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, int)), f"{path}: key {k!r}"
            check_plain(v, f"{path}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_plain(v, f"{path}[{i}]")
    else:
        assert type(obj) in (str, int, float, bool, np.ndarray), f"{path} is a {type(obj).__name__}"


def to_json(sd):
    def enc(o):
        if isinstance(o, np.ndarray):
            return {"__array__": o.tolist(), "dtype": str(o.dtype), "shape": list(o.shape)}
        if isinstance(o, dict):
            return {str(k): enc(v) for k, v in o.items()}
        if isinstance(o, list):
            return [enc(v) for v in o]
        return o

    return json.dumps(enc(sd))


def from_json(text):
    def dec(o):
        if isinstance(o, dict):
            if "__array__" in o:
                return np.array(o["__array__"], dtype=o["dtype"]).reshape(o["shape"])
            return {k: dec(v) for k, v in o.items()}
        if isinstance(o, list):
            return [dec(v) for v in o]
        return o

    return dec(json.loads(text))


@pytest.mark.parametrize("name, make", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
@pytest.mark.parametrize("via_json", [False, True])
def test_state_dict_round_trip_continues_identically(name, make, via_json):
    values = make_values(7, np.float32)
    grads = grad_sequence(7, np.float32, holes={(0, 2), (1, 2)})
    _, _, uninterrupted = run_atrous(lambda ps, **k: make(ps), {}, values, grads)

    first, params, history = run_atrous(lambda ps, **k: make(ps), {}, values, grads[:8])
    sd = first.state_dict()
    check_plain(sd)
    if via_json:  # e.g. a checkpoint's JSON metadata: int keys become strings
        sd = from_json(to_json(sd))
    # Continue the old optimiser for a few steps: the saved state must not change with it.
    snapshot = from_json(to_json(sd))
    for gs in grads[8:11]:
        for p, g in zip(params, gs):
            p.grad = g
        first.step()
    assert to_json(sd) == to_json(snapshot)

    # A fresh optimiser over fresh tensors holding the weights at step 8 resumes the run.
    fresh = [Tensor(h.copy(), requires_grad=True) for h in history[-1]]
    second = make(fresh)
    second.load_state_dict(sd)
    for t, gs in enumerate(grads[8:], start=8):
        for p, g in zip(fresh, gs):
            p.grad = None if g is None else g.copy()
        second.step()
        for a, b in zip(fresh, uninterrupted[t]):
            np.testing.assert_array_equal(a.data, b)


def test_load_state_dict_restores_hyperparameters_and_casts_state():
    src_params = [Tensor(np.ones(3, np.float64), requires_grad=True)]
    src = SGD(src_params, lr=0.3, momentum=0.9)
    src_params[0].grad = np.full(3, 0.25)
    src.step()
    dst_params = [Tensor(np.ones(3, np.float32), requires_grad=True)]
    dst = SGD(dst_params, lr=0.01)
    dst.load_state_dict(src.state_dict())
    assert dst.param_groups[0]["lr"] == 0.3 and dst.param_groups[0]["momentum"] == 0.9
    assert dst.param_groups[0]["params"][0] is dst_params[0]
    buf = dst.state[dst_params[0]]["momentum_buffer"]
    assert buf.dtype == np.float32
    np.testing.assert_array_equal(buf, np.full(3, 0.25, np.float32))


def test_adam_state_dict_uses_torch_layout(torch):
    values = make_values(1, np.float32)
    grads = grad_sequence(1, np.float32, steps=2)
    opt, _, _ = run_atrous(Adam, dict(lr=0.01, amsgrad=True), values, grads)
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["step"], float) and sd["state"][0]["step"] == 2.0
    assert sd["param_groups"][0]["betas"] == [0.9, 0.999]
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_load_state_dict_errors():
    a, b = Tensor(np.ones(2, np.float32), requires_grad=True), Tensor(np.ones(3, np.float32), requires_grad=True)
    opt = SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = np.ones(2, np.float32), np.ones(3, np.float32)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameters in the loaded state dict but 1"):
        SGD([Tensor(np.ones(2, np.float32))], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups but the optimizer has 2"):
        SGD([{"params": [Tensor(np.ones(2, np.float32))]}, {"params": [Tensor(np.ones(3, np.float32))]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"has shape \(3,\) but the parameter has shape \(4,\)"):
        SGD([Tensor(np.ones(2, np.float32)), Tensor(np.ones(4, np.float32))], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


# ----- errors ----------------------------------------------------------------------------
def _p():
    return Tensor(np.ones(2, np.float32), requires_grad=True)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD([_p()], lr=-0.1), "SGD: invalid lr -0.1"),
        (lambda: SGD([_p()], lr=0.1, momentum=-0.5), "invalid momentum -0.5"),
        (lambda: SGD([_p()], lr=0.1, weight_decay=-1e-4), "invalid weight_decay"),
        (lambda: SGD([_p()], lr=0.1, nesterov=True), "Nesterov momentum requires momentum > 0 and zero dampening"),
        (lambda: SGD([_p()], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
        (lambda: SGD([{"params": [_p()], "lr": -1.0}], lr=0.1), "invalid lr -1.0"),
        (lambda: Adam([_p()], lr=-1e-3), "Adam: invalid lr"),
        (lambda: Adam([_p()], eps=-1e-8), "invalid eps"),
        (lambda: Adam([_p()], betas=(1.0, 0.999)), r"beta parameter at index 0 1.0; it must be in \[0.0, 1.0\)"),
        (lambda: Adam([_p()], betas=(0.9, -0.1)), "beta parameter at index 1"),
        (lambda: Adam([_p()], betas=(0.9,)), "betas must be a pair"),
        (lambda: AdamW([_p()], weight_decay=-0.01), "AdamW: invalid weight_decay"),
        (lambda: AdamW([{"params": [_p()], "betas": (0.9, 1.5)}]), "AdamW: invalid beta parameter at index 1"),
        (lambda: SGD([], lr=0.1), "empty parameter list"),
        (lambda: SGD([{"params": [_p()]}, {"lr": 0.1}], lr=0.1), "no 'params' entry"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_invalid_params():
    p = _p()
    with pytest.raises(TypeError, match="single Tensor"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="params\\[1\\] is ndarray"):
        SGD([p, np.ones(2)], lr=0.1)
    with pytest.raises(TypeError, match="not a set"):
        SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        SGD([p * 2.0], lr=0.1)
    with pytest.warns(UserWarning, match="duplicate"):
        SGD([p, p], lr=0.1)


def test_bad_gradients_are_reported():
    p = _p()
    opt = Adam([p])
    p.grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(2,\) but its grad has shape \(3,\)"):
        opt.step()
    p.grad = np.ones(2, np.float64)
    with pytest.raises(TypeError, match="dtype float32 but its grad has dtype float64"):
        opt.step()


def test_base_class_step_is_abstract_and_repr_lists_groups():
    opt = Optimizer([_p()], {"lr": 0.5})
    with pytest.raises(NotImplementedError):
        opt.step()
    text = repr(SGD([{"params": [_p()]}, {"params": [_p()], "lr": 0.2}], lr=0.1, momentum=0.9))
    assert "Parameter Group 1" in text and "lr: 0.2" in text and "momentum: 0.9" in text
