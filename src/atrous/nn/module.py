"""``Module``: the base class of every layer and model, with PyTorch's registration rules.

Assigning a ``Parameter`` to an attribute registers a parameter, assigning a ``Module``
registers a child, and ``register_buffer`` registers state that is saved but not learned
(BatchNorm's running statistics). The three live in ordered dicts, so names come out in
definition order, and ``state_dict`` keys are the dotted paths PyTorch gives the same tree:

>>> from atrous import nn
>>> class Net(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.fc = nn.Linear(4, 2)
>>> list(Net().state_dict())
['fc.weight', 'fc.bias']
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple

import numpy as np

from ..tensor import Tensor
from .parameter import Parameter

__all__ = ["Module", "LoadStateDictError"]


class LoadStateDictError(RuntimeError, ValueError):
    """A state dict that does not fit the module (PyTorch raises RuntimeError; this is both)."""


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by the hook registrations; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _addindent(text, spaces):
    """Indent every line but the first (children's reprs nest under their parent's)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _to_array(value):
    """A state-dict value as an array: NumPy arrays, atrous Tensors, torch tensors (.numpy())."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor or Parameter
        value = value.detach()
        value = value.cpu() if hasattr(value, "cpu") else value
        return value.numpy()
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)


def _check_name(kind, module, name):
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got {name!r}')


class Module:
    """Base class of all layers: owns parameters, buffers and child modules.

    Subclasses call ``super().__init__()`` first, then assign their parameters and
    sub-modules as attributes, and define ``forward``; calling the module runs ``forward``.
    """

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ----- forward -----------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` runs before ``forward``; a non-None return replaces args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` runs after ``forward``; non-None replaces output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ----- registration ------------------------------------------------------------------
    def _check_initialised(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def register_parameter(self, name, param):
        """Add a parameter (a ``Parameter`` or None) under ``name``."""
        self._check_initialised("parameter")
        _check_name("parameter", self, name)
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(atrous.nn.Parameter or None required)"
            )
        if param is not None and not param.is_leaf:
            raise ValueError(
                f"Cannot assign non-leaf Tensor to parameter '{name}'; wrap the data of a "
                "computed value in a Parameter instead"
            )
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add non-learned state (a Tensor, an array, or None) under ``name``.

        Buffers are saved in ``state_dict`` unless ``persistent=False``; arrays are wrapped in
        a Tensor without copying.
        """
        self._check_initialised("buffer")
        _check_name("buffer", self, name)
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        self._buffers[name] = self._as_buffer(name, tensor)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    @staticmethod
    def _as_buffer(name, value):
        if value is None or (isinstance(value, Tensor) and not isinstance(value, Parameter)):
            return value
        if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
            return Tensor(value)
        raise TypeError(
            f"cannot assign '{type(value).__name__}' object to buffer '{name}' "
            "(a Tensor, an array or None required)"
        )

    def add_module(self, name, module):
        """Add a child module (or None) under ``name``."""
        self._check_initialised("child module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name("module", self, name)
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            self._check_initialised("parameters")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(atrous.nn.Parameter or None expected)"
                )
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._check_initialised("child module")
            self._forget(name, keep="_modules")
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' "
                    "(atrous.nn.Module or None expected)"
                )
            self._modules[name] = value
        elif params is not None and name in self._buffers:
            self._buffers[name] = self._as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep):
        """Drop ``name`` from the other registries so the new assignment owns it alone
        (the ``keep`` registry is left alone, so a replaced entry keeps its position)."""
        self.__dict__.pop(name, None)
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry != keep:
                getattr(self, registry).pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the three registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def __dir__(self):
        keys = list(super().__dir__()) + list(self._parameters) + list(self._buffers)
        return sorted(set(keys + list(self._modules)))

    # ----- traversal ---------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """Yield ``(dotted_name, module)`` for this module and all below it, pre-order."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for mod_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield ``(dotted_name, Parameter)``; a shared parameter is yielded once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        """The module at dotted path ``target`` ('' is this module)."""
        module = self
        if target == "":
            return module
        for part in target.split("."):
            if part not in module._modules or module._modules[part] is None:
                raise AttributeError(f"{module._get_name()} has no attribute `{part}`")
            module = module._modules[part]
        return module

    def get_parameter(self, target):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if name not in module._parameters:
            raise AttributeError(f"{module._get_name()} has no parameter `{name}`")
        return module._parameters[name]

    # ----- state dict --------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and persistent buffers by dotted name, in PyTorch's order.

        Values are the NumPy arrays themselves (not copies, as PyTorch's detached tensors
        share storage); ``keep_vars=True`` gives the Parameter/Tensor objects instead.
        """
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.data
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.data
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def _optional_state_keys(self):
        """Names PyTorch tolerates missing from an unversioned state dict (none by default)."""
        return ()

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict``'s values into this module's parameters and buffers, in place.

        Values may be NumPy arrays, atrous Tensors or anything with ``.numpy()`` (torch
        tensors); each is cast to the existing array's dtype. Shape mismatches are always
        errors; missing and unexpected keys are errors when ``strict``. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"load_state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}"
            )
        own = self.state_dict(keep_vars=True)
        optional = set()
        for prefix, module in self.named_modules():
            optional.update(prefix + ("." if prefix else "") + k for k in module._optional_state_keys())
        missing = [k for k in own if k not in state_dict and k not in optional]
        unexpected = [k for k in state_dict if k not in own]
        errors, updates = [], []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _to_array(state_dict[key])
            if tuple(value.shape) != tuple(target.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} from "
                    f"checkpoint, the shape in current model is {tuple(target.shape)}."
                )
                continue
            updates.append((target, value))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise LoadStateDictError(
                f"Error(s) in loading state_dict for {self._get_name()}:\n\t" + "\n\t".join(errors)
            )
        for target, value in updates:
            # Copy into the existing array: its dtype is kept and anything holding a
            # reference to the parameter (an optimizer) sees the new values.
            target.data[...] = value
        return _IncompatibleKeys(missing, unexpected)

    # ----- modes and gradients -----------------------------------------------------------
    def train(self, mode=True):
        """Set training mode on this module and every descendant; returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: training mode is expected to be boolean, got {mode!r}")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def fuse(self, groups=None, example_input=None):
        """Fold each Conv2d -> BatchNorm2d (-> ReLU) for inference, in place (eval mode only);
        returns self. See ``atrous.nn.utils.fuse`` for how pairs are found."""
        from .utils import fuse

        return fuse(self, groups, example_input)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset parameter gradients: to None (PyTorch's default) or to zero arrays."""
        for p in self.parameters():
            if p.grad is not None:
                # A fresh zero array, never zeroing in place: a grad array may be shared.
                p.grad = None if set_to_none else p.grad * 0

    def apply(self, fn):
        """Call ``fn`` on every child (recursively) and then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ----- dtype -------------------------------------------------------------------------
    def _apply(self, fn):
        for module in self.children():
            module._apply(fn)
        for p in self._parameters.values():
            if p is not None:
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
        for b in self._buffers.values():
            if b is not None:
                b.data = fn(b.data)
        return self

    def to(self, *args, dtype=None, device=None):
        """Cast floating-point parameters and buffers to ``dtype`` (integer buffers stay).

        Accepts ``to(np.float64)``, ``to('float64')``, ``to(dtype=...)``; the device 'cpu' is
        accepted and ignored.
        """
        for a in args:
            if isinstance(a, str) and a == "cpu":
                device = a
            elif dtype is None:
                dtype = a
            else:
                raise TypeError(f"to: unexpected argument {a!r}")
        if device not in (None, "cpu"):
            raise ValueError(f"to: only the 'cpu' device is supported, got {device!r}")
        if dtype is None:
            return self
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"to: cannot interpret {dtype!r} as a dtype") from None
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(
                f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}"
            )

        def cast(a):
            return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a

        return self._apply(cast)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def cpu(self):
        return self

    # ----- repr --------------------------------------------------------------------------
    def _get_name(self):
        return type(self).__name__

    def extra_repr(self):
        """The text inside this module's parentheses (subclasses describe their settings)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({name}): " + _addindent(repr(module), 2) for name, module in self._modules.items()
        ]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"
