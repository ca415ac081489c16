"""Adam (Kingma & Ba) and AdamW (Loshchilov & Hutter: decoupled weight decay), optional AMSGrad."""
from __future__ import annotations

from ..backend import get_array_module
from .optimizer import Optimizer, _check_range


class Adam(Optimizer):
    """``torch.optim.Adam``: the same update sequence, step for step.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``), at step ``t``::

        p = p * (1 - lr * weight_decay)    if decoupled_weight_decay (AdamW)
        g = g + weight_decay * p           otherwise (L2 penalty in the gradient)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v)              (amsgrad; then v_hat replaces v below)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: iterable of Tensors or of param-group dicts.
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty, or decoupled decay for AdamW (default 0).
        amsgrad: keep the running maximum of ``v`` (Reddi et al.).
        maximize: ascend the objective instead of descending.
        decoupled_weight_decay: apply weight decay to the weights directly (AdamW).

    State per parameter: ``step`` (a number), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq`` (arrays of the parameter's shape and dtype).

    >>> import numpy as np, atrous
    >>> w = atrous.Tensor(np.zeros(2, np.float32), requires_grad=True)
    >>> opt = Adam([w], lr=0.1)
    >>> w.grad = np.array([1.0, -3.0], np.float32)
    >>> opt.step(); np.round(w.data, 4)  # the first Adam step moves each weight by about lr
    array([-0.1,  0.1], dtype=float32)
    """

    _name = "Adam"

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        maximize=False,
        decoupled_weight_decay=False,
    ):
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, (list, tuple)) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group):
        op = self._name
        _check_range(op, "lr", group["lr"], 0.0)
        _check_range(op, "eps", group["eps"], 0.0)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{op}: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(betas)
        _check_range(op, "beta parameter at index 0", betas[0], 0.0, 1.0)
        _check_range(op, "beta parameter at index 1", betas[1], 0.0, 1.0)
        _check_range(op, "weight_decay", group["weight_decay"], 0.0)

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        index = 0
        for group in self.param_groups:
            lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p in group["params"]:
                g = self._grad_of(p, index)
                index += 1
                if g is None:
                    continue
                xp = get_array_module(p.data)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0.0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                if group["maximize"]:
                    g = -g
                state["step"] += 1
                t = state["step"]

                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.data *= 1.0 - lr * weight_decay
                    else:
                        g = g + weight_decay * p.data

                m, v = state["exp_avg"], state["exp_avg_sq"]
                _lerp_(m, g, 1.0 - beta1)
                v *= beta2
                v += (1.0 - beta2) * (g * g)

                if group["amsgrad"]:
                    vmax = state["max_exp_avg_sq"]
                    xp.maximum(vmax, v, out=vmax)
                    v = vmax
                step_size = lr / (1.0 - beta1**t)
                bias_correction2_sqrt = (1.0 - beta2**t) ** 0.5
                denom = xp.sqrt(v)
                denom /= bias_correction2_sqrt
                denom += eps
                # denom becomes the update m / denom * step_size, without another temporary
                xp.divide(m, denom, out=denom)
                denom *= step_size
                p.data -= denom
        self._opt_called = True
        return loss


def _lerp_(m, g, w):
    """``m += w * (g - m)`` in place, in the two forms torch's ``lerp_`` uses.

    For ``w >= 0.5`` it computes ``g - (1 - w) * (g - m)``, which is exact at ``w == 1``
    (``beta1 == 0``: the average is the gradient itself).
    """
    diff = g - m
    if w < 0.5:
        diff *= w
        m += diff
    else:
        diff *= 1.0 - w
        m[...] = g
        m -= diff


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (default ``weight_decay=1e-2``).

    Before the Adam update, each weight is shrunk: ``p = p * (1 - lr * weight_decay)``; the
    decay never enters the moment estimates. Arguments and state as :class:`Adam`.

    >>> import numpy as np, atrous
    >>> w = atrous.Tensor(np.ones(1, np.float32), requires_grad=True)
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = np.zeros(1, np.float32)
    >>> opt.step(); w.data  # 1 * (1 - 0.1 * 0.5); a zero gradient moves nothing else
    array([0.95], dtype=float32)
    """

    _name = "AdamW"

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *, maximize=False
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True
        )

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True  # AdamW always decouples, as PyTorch's
