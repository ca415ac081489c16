"""Learning-rate schedules: PyTorch's sequences, closed forms, state_dict, errors."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atrous import Tensor
from atrous.optim import SGD, Adam, Optimizer, lr_scheduler

STEPS = 50


def _params(n):
    return [Tensor(np.zeros(2, np.float32), requires_grad=True) for _ in range(n)]


def make_optimizer(kind, lrs, lib=None):
    """One param group per entry of ``lrs``; ``lib`` is torch or None (atrous)."""
    if lib is None:
        groups = [{"params": [p], "lr": lr} for p, lr in zip(_params(len(lrs)), lrs)]
        return (SGD(groups, lr=0.1, momentum=0.9) if kind == "SGD" else Adam(groups, lr=0.1))
    groups = [{"params": [lib.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return lib.optim.SGD(groups, lr=0.1, momentum=0.9) if kind == "SGD" else lib.optim.Adam(groups, lr=0.1)


def trace(opt, scheds, steps=STEPS):
    """The lr (and momentum / beta1) of every group before each optimizer step."""
    rows = []
    for _ in range(steps):
        rows.append([(g["lr"], g.get("momentum", g.get("betas", (None,))[0])) for g in opt.param_groups])
        opt.step()
        for s in scheds:
            s.step()
    rows.append([(g["lr"], g.get("momentum", g.get("betas", (None,))[0])) for g in opt.param_groups])
    assert scheds[-1].get_last_lr() == [g["lr"] for g in opt.param_groups]
    return np.array(rows, dtype=float)


CASES = [
    ("StepLR", dict(step_size=7, gamma=0.5), [0.1]),
    ("StepLR", dict(step_size=1, gamma=0.9), [0.1, 0.02]),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3), [0.1, 1.0]),
    ("ExponentialLR", dict(gamma=0.93), [0.5]),
    ("LinearLR", dict(start_factor=0.25, end_factor=0.9, total_iters=10), [0.1, 0.4]),
    ("LinearLR", dict(), [0.1]),
    ("CosineAnnealingLR", dict(T_max=STEPS), [0.1]),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.01), [0.1, 0.05]),  # past T_max: rises again
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.2), [0.1]),  # eta_min above the base rate
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS), [0.1]),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], epochs=5, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"), [0.1, 0.1]),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=STEPS, pct_start=0.25, base_momentum=0.8, max_momentum=0.9, div_factor=10.0, final_div_factor=100.0), [0.1]),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=STEPS, cycle_momentum=False), [0.1]),
]


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
@pytest.mark.parametrize("name, kwargs, lrs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_torch(torch, kind, name, kwargs, lrs):
    ours_opt, torch_opt = make_optimizer(kind, lrs), make_optimizer(kind, lrs, torch)
    ours = trace(ours_opt, [getattr(lr_scheduler, name)(ours_opt, **kwargs)])
    theirs = trace(torch_opt, [getattr(torch.optim.lr_scheduler, name)(torch_opt, **kwargs)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_chained_schedulers_match_torch(torch):
    # Two chainable schedules acting on one optimiser compose multiplicatively.
    def run(opt, mod):
        return trace(opt, [mod.StepLR(opt, step_size=4, gamma=0.5), mod.ExponentialLR(opt, gamma=0.97)])

    ours = run(make_optimizer("SGD", [0.1, 0.3]), lr_scheduler)
    theirs = run(make_optimizer("SGD", [0.1, 0.3], torch), torch.optim.lr_scheduler)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@settings(max_examples=25)
@given(
    T_max=st.integers(1, 30),
    eta_min=st.sampled_from([0.0, 1e-4, 0.05]),
    lr=st.floats(1e-3, 1.0),
    steps=st.integers(1, 80),
)
def test_cosine_random_configs_match_torch(torch, T_max, eta_min, lr, steps):
    ours_opt, torch_opt = make_optimizer("SGD", [lr]), make_optimizer("SGD", [lr], torch)
    ours = trace(ours_opt, [lr_scheduler.CosineAnnealingLR(ours_opt, T_max, eta_min)], steps)
    theirs = trace(torch_opt, [torch.optim.lr_scheduler.CosineAnnealingLR(torch_opt, T_max, eta_min)], steps)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@settings(max_examples=25)
@given(
    total=st.integers(2, 60),
    pct_start=st.floats(0.05, 0.95),
    div_factor=st.sampled_from([5.0, 25.0]),
    final_div_factor=st.sampled_from([10.0, 1e4]),
    three_phase=st.booleans(),
    anneal=st.sampled_from(["cos", "linear"]),
    kind=st.sampled_from(["SGD", "Adam"]),
)
def test_one_cycle_random_configs_match_torch(torch, total, pct_start, div_factor, final_div_factor, three_phase, anneal, kind):
    kwargs = dict(max_lr=0.4, total_steps=total, pct_start=pct_start, div_factor=div_factor,
                  final_div_factor=final_div_factor, three_phase=three_phase, anneal_strategy=anneal)
    ours_opt, torch_opt = make_optimizer(kind, [0.1]), make_optimizer(kind, [0.1], torch)
    ours = trace(ours_opt, [lr_scheduler.OneCycleLR(ours_opt, **kwargs)], total)
    theirs = trace(torch_opt, [torch.optim.lr_scheduler.OneCycleLR(torch_opt, **kwargs)], total)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


# ----- closed forms written out here (no PyTorch) ------------------------------------------
@pytest.mark.parametrize(
    "name, kwargs, formula",
    [
        ("StepLR", dict(step_size=3, gamma=0.5), lambda e: 0.8 * 0.5 ** (e // 3)),
        ("MultiStepLR", dict(milestones=[4, 9, 9], gamma=0.1), lambda e: 0.8 * 0.1 ** sum(m <= e for m in (4, 9, 9))),
        ("ExponentialLR", dict(gamma=0.9), lambda e: 0.8 * 0.9**e),
        ("LinearLR", dict(start_factor=0.5, end_factor=1.0, total_iters=8), lambda e: 0.8 * (0.5 + 0.5 * min(e, 8) / 8)),
        ("CosineAnnealingLR", dict(T_max=12, eta_min=0.1), lambda e: 0.1 + 0.7 * (1 + math.cos(math.pi * e / 12)) / 2),
    ],
)
def test_closed_forms(name, kwargs, formula):
    opt = make_optimizer("SGD", [0.8])
    sched = getattr(lr_scheduler, name)(opt, **kwargs)
    for epoch in range(30):
        assert sched.last_epoch == epoch
        assert sched.get_last_lr()[0] == pytest.approx(formula(epoch), rel=1e-9, abs=1e-12)
        assert sched._get_closed_form_lr()[0] == pytest.approx(formula(epoch), rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()


def test_one_cycle_shape():
    # Warm-up from max_lr / 25 to max_lr at step pct_start * total - 1, then down to
    # initial / 1e4 at the last step; momentum moves the other way between 0.95 and 0.85.
    opt = make_optimizer("SGD", [0.1])
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=100)
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        if len(lrs) < 100:
            sched.step()
    peak = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(1.0 / 25) and moms[0] == pytest.approx(0.95)
    assert peak == 29 and lrs[peak] == pytest.approx(1.0) and moms[peak] == pytest.approx(0.85)
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4) and moms[-1] == pytest.approx(0.95)
    assert np.all(np.diff(lrs[: peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) < 0)


# ----- state_dict ----------------------------------------------------------------------------
def check_plain(obj, path="state_dict"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str), f"{path}: key {k!r}"
            check_plain(v, f"{path}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_plain(v, f"{path}[{i}]")
    else:
        assert type(obj) in (str, int, float, bool), f"{path} is a {type(obj).__name__}"


RESUME_CASES = [
    ("StepLR", dict(step_size=6, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3, 25, 25, 40], gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("LinearLR", dict(start_factor=0.1, total_iters=30)),
    ("CosineAnnealingLR", dict(T_max=15, eta_min=0.001)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS)),
]


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
@pytest.mark.parametrize("name, kwargs", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_state_dict_resume_continues_identically(kind, name, kwargs):
    cls = getattr(lr_scheduler, name)
    opt = make_optimizer(kind, [0.1, 0.05])
    uninterrupted = trace(opt, [cls(opt, **kwargs)])

    opt = make_optimizer(kind, [0.1, 0.05])
    sched = cls(opt, **kwargs)
    head = trace(opt, [sched], 20)
    sched_state = sched.state_dict()
    check_plain(sched_state)
    sched_state = json.loads(json.dumps(sched_state))  # survives a JSON checkpoint unchanged
    opt_state = opt.state_dict()

    # Resume as PyTorch documents it: build the scheduler, then load both states.
    opt2 = make_optimizer(kind, [0.7, 0.7])
    sched2 = cls(opt2, **kwargs)
    sched2.load_state_dict(sched_state)
    opt2.load_state_dict(opt_state)
    assert sched2.last_epoch == 20 and sched2.get_last_lr() == sched.get_last_lr()
    tail = trace(opt2, [sched2], STEPS - 20)
    np.testing.assert_array_equal(np.concatenate([head[:-1], tail]), uninterrupted)


def test_resuming_with_last_epoch_needs_initial_lr():
    opt = make_optimizer("SGD", [0.1])
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt, step_size=2, last_epoch=4)
    lr_scheduler.StepLR(opt, step_size=2)  # sets initial_lr
    resumed = lr_scheduler.StepLR(opt, step_size=2, last_epoch=4)
    assert resumed.last_epoch == 5


# ----- errors and warnings ----------------------------------------------------------------
class _NoMomentum(Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        self._opt_called = True


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda o: lr_scheduler.StepLR(o, step_size=0), ValueError, "step_size must be a positive integer, got 0"),
        (lambda o: lr_scheduler.MultiStepLR(o, milestones=[3, -1]), ValueError, "non-negative integers"),
        (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be a positive integer"),
        (lambda o: lr_scheduler.LinearLR(o, start_factor=0.0), ValueError, "start_factor"),
        (lambda o: lr_scheduler.LinearLR(o, end_factor=1.5), ValueError, "end_factor"),
        (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1), ValueError, "total_steps or both epochs and steps_per_epoch"),
        (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=0), ValueError, "positive integer total_steps, got 0"),
        (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, epochs=2, steps_per_epoch=-1), ValueError, "steps_per_epoch"),
        (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
        (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError, "'exp'"),
        (lambda o: lr_scheduler.OneCycleLR(o, max_lr=[0.1, 0.2, 0.3], total_steps=10), ValueError, "got 3 values for 2 groups"),
        (lambda o: lr_scheduler.StepLR(object(), step_size=2), TypeError, "not an atrous Optimizer"),
        (lambda o: lr_scheduler.OneCycleLR(object(), max_lr=0.1, total_steps=3), TypeError, "not an atrous Optimizer"),
    ],
)
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make(make_optimizer("SGD", [0.1, 0.2]))


def test_one_cycle_needs_momentum_to_cycle_it():
    opt = _NoMomentum(_params(1))
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5)
    lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5, cycle_momentum=False)


def test_one_cycle_refuses_to_step_past_the_end():
    opt = make_optimizer("SGD", [0.1])
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="tried to step 4 times; the schedule has total_steps=3"):
        sched.step()


def test_warns_when_stepped_before_the_optimizer():
    opt = make_optimizer("SGD", [0.1])
    sched = lr_scheduler.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()
