"""``Optimizer``: parameter groups, per-parameter state, and a plain-data ``state_dict``.

Same surface as ``torch.optim.Optimizer``. Parameters are ``atrous.Tensor`` objects; a step
updates ``p.data`` in place (so every module holding the array sees the change) and keeps its
dtype. ``state_dict()`` holds only arrays, numbers, strings, lists and dicts, so a checkpoint
can be written without pickle.
"""
from __future__ import annotations

import copy
import warnings
from collections import defaultdict

import numpy as np

from ..backend import get_array_module
from ..tensor import Tensor


class _RequiredParameter:
    """Marks a hyperparameter that has no default (it must be given per group)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _check_range(op, name, value, low, high=None, low_open=False, high_open=True):
    """Raise ``ValueError`` unless ``low <= value (< or <=) high``; messages show the value."""
    ok = value > low if low_open else value >= low
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        span = f"{lo}{low}, {high}{hi}" if high is not None else (f"> {low}" if low_open else f">= {low}")
        raise ValueError(f"{op}: invalid {name} {value!r}; it must be in {span}")


def _plain(value):
    """Deep copy of ``value`` with tuples as lists and arrays copied (no other object types)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "copy") and hasattr(value, "dtype") and hasattr(value, "shape"):
        return value.copy()
    return value


class Optimizer:
    """Base class of all optimisers.

    Args:
        params: an iterable of Tensors (or of ``(name, Tensor)`` pairs), or an iterable of
            dicts, each with a ``'params'`` entry and per-group hyperparameters overriding
            ``defaults``.
        defaults: the hyperparameters of a group that does not set them.

    Subclasses implement ``step()`` and may override ``_validate_group(group)``.

    >>> import numpy as np, atrous
    >>> from atrous.optim import SGD
    >>> w = atrous.Tensor(np.ones(3, np.float32), requires_grad=True)
    >>> opt = SGD([w], lr=0.5)
    >>> w.grad = np.full(3, 2.0, np.float32)
    >>> opt.step(); w.data
    array([0., 0., 0.], dtype=float32)
    """

    def __init__(self, params, defaults):
        name = type(self).__name__
        self.defaults = dict(defaults)
        if isinstance(params, Tensor):
            raise TypeError(
                f"{name}: params should be an iterable of Tensors or dicts, but got a single "
                f"Tensor of shape {params.shape}; wrap it in a list"
            )
        if isinstance(params, (dict, set)):
            raise TypeError(
                f"{name}: params should be an ordered iterable (list) of Tensors or dicts, "
                f"got {type(params).__name__}"
            )
        self.state = defaultdict(dict)
        self.param_groups = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError(f"{name}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)
        # Set by step(); lets a learning-rate scheduler notice it is stepped first.
        self._opt_called = False

    # ----- groups ---------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with ``'params'`` and optional hyperparameters)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}: param_group has no 'params' entry (keys: {sorted(param_group)})")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                f"{name}: parameters must be given in an ordered collection (list), not a set, "
                f"so that their order is the same in every run"
            )
        params = list(params)

        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError(f"{name}: all params should be with or without names; some names are missing")
            group["param_names"] = names
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{name}: can only optimize atrous Tensors, but params[{i}] is {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (params[{i}], shape {p.shape})")
        group["params"] = params

        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required hyperparameter {key!r}")
            group.setdefault(key, default)
        self._validate_group(group)

        if len({id(p) for p in params}) != len(params):
            warnings.warn(f"{name}: a parameter group contains duplicate parameters", UserWarning, stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        if self.param_groups and ("param_names" in group) != ("param_names" in self.param_groups[0]):
            raise ValueError(f"{name}: all parameter groups should be with or without param names")
        self.param_groups.append(group)

    def _validate_group(self, group):
        """Check one group's hyperparameters; subclasses raise ``ValueError`` on bad values."""

    # ----- gradients ------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to ``None`` (the default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g = p.grad.data if isinstance(p.grad, Tensor) else p.grad
                    g[...] = 0

    def step(self, closure=None):
        raise NotImplementedError

    def _grad_of(self, p, index):
        """The gradient of ``p`` as an array of its dtype and shape, or None (skip it)."""
        g = p.grad
        if g is None:
            return None
        if isinstance(g, Tensor):
            g = g.data
        if g.shape != p.data.shape:
            raise ValueError(
                f"{type(self).__name__}.step: parameter {index} has shape {p.data.shape} "
                f"but its grad has shape {g.shape}"
            )
        if g.dtype != p.data.dtype:
            raise TypeError(
                f"{type(self).__name__}.step: parameter {index} has dtype {p.data.dtype} "
                f"but its grad has dtype {g.dtype}"
            )
        return g

    # ----- serialisation --------------------------------------------------------------
    def _index_params(self):
        """Map id(param) -> its position counting through all groups (PyTorch's numbering)."""
        index = {}
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
        return index

    def state_dict(self):
        """The optimiser's state as plain data: ``{'state': {i: {...}}, 'param_groups': [...]}``.

        Parameters are replaced by their position ``i`` (counting through the groups in order);
        arrays are copies, tuples (``betas``) become lists.
        """
        index = self._index_params()
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                i = index[id(p)]
                if p in self.state and i not in state:
                    state[i] = _plain(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``: hyperparameters per group and copies of the state arrays.

        Arrays are cast to their parameter's dtype (``step`` counters stay numbers). Keys of
        ``'state'`` may be ints or their strings (as JSON writes them).
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: loaded state dict has {len(saved_groups)} parameter groups "
                f"but the optimizer has {len(self.param_groups)}"
            )
        for k, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {k} has {len(s['params'])} parameters "
                    f"in the loaded state dict but {len(g['params'])} in the optimizer"
                )
        id_map = {}
        for g, s in zip(self.param_groups, saved_groups):
            id_map.update(zip((int(i) for i in s["params"]), g["params"]))

        state = defaultdict(dict)
        for key, values in state_dict["state"].items():
            key = int(key)
            if key not in id_map:
                raise ValueError(f"{name}.load_state_dict: state refers to parameter {key}, which no group holds")
            p = id_map[key]
            state[p] = {k: self._restore_value(p, k, v, key) for k, v in values.items()}

        groups = []
        for g, s in zip(self.param_groups, saved_groups):
            s["params"] = g["params"]
            if "param_names" in g and "param_names" not in s:
                s["param_names"] = g["param_names"]
            for k in ("betas",):  # stored as lists in plain data; tuples in a live group
                if isinstance(s.get(k), list):
                    s[k] = tuple(s[k])
            groups.append(s)
        self.state = state
        self.param_groups = groups

    def _restore_value(self, p, key, value, index):
        if key == "step" or not (hasattr(value, "dtype") and hasattr(value, "shape")):
            return float(value) if key == "step" else copy.deepcopy(value)
        if tuple(value.shape) != tuple(p.data.shape):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state {key!r} of parameter {index} has shape "
                f"{tuple(value.shape)} but the parameter has shape {p.data.shape}"
            )
        xp = get_array_module(p.data)
        return xp.array(value, dtype=p.data.dtype, copy=True)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
