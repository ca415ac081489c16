"""Checkpoints as a single ``.npz`` with ``allow_pickle=False``: arrays plus a JSON skeleton.

Any nesting of dicts, lists, tuples, numbers, strings, None and arrays is stored: arrays go
into the archive under generated names, everything else into a JSON document (``__meta__``)
that refers to them. Loading never unpickles, so a checkpoint from an untrusted source can
at worst fail to load, never run code. Writes are atomic (see ``atomic.py``).
"""
from __future__ import annotations

import io
import json

import numpy as np

from .atomic import atomic_write

_META = "__meta__"
FORMAT_VERSION = 1


def _encode(obj, arrays):
    """Replace arrays by references, keeping types JSON cannot express explicitly."""
    if isinstance(obj, (np.ndarray, np.generic)) or hasattr(obj, "__array__") and not isinstance(
        obj, (str, bytes, dict, list, tuple)
    ):
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise TypeError("checkpoint: object arrays cannot be saved without pickle")
        key = f"a{len(arrays)}"
        arrays[key] = arr
        return {"__array__": key, "scalar": arr.ndim == 0 and isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, arrays) for k, v in obj.items()}}
        # Non-string keys (an optimizer's integer parameter indices) survive as pairs.
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    raise TypeError(f"checkpoint: cannot save a value of type {type(obj).__name__}")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        arr = arrays[obj["__array__"]]
        return arr[()] if obj.get("scalar") else arr
    if "__dict__" in obj:
        return {k: _decode(v, arrays) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__float__" in obj:
        return float(obj["__float__"])
    raise ValueError(f"checkpoint: unknown entry {sorted(obj)} in metadata")


def save(obj, path):
    """Save a nested structure of dicts/lists/numbers/strings/arrays to ``path`` atomically."""
    arrays = {}
    meta = {"format": "atrous-checkpoint", "version": FORMAT_VERSION, "root": _encode(obj, arrays)}
    arrays[_META] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path) as f:
        f.write(buf.getbuffer())


def load(path):
    """Load what ``save`` wrote. Never unpickles."""
    with np.load(path, allow_pickle=False) as z:
        if _META not in z.files:
            raise ValueError(f"checkpoint: {path} has no {_META} entry; not an atrous checkpoint")
        meta = json.loads(str(z[_META]))
        if meta.get("format") != "atrous-checkpoint":
            raise ValueError(f"checkpoint: {path} is not an atrous checkpoint")
        arrays = {k: z[k] for k in z.files if k != _META}
    return _decode(meta["root"], arrays)


def save_checkpoint(path, model=None, optimizer=None, scheduler=None, **extra):
    """Save model/optimizer/scheduler state dicts and any plain extras (epoch, RNG state...)."""
    payload = dict(extra)
    if model is not None:
        payload["model"] = model.state_dict()
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    save(payload, path)


def load_checkpoint(path, model=None, optimizer=None, scheduler=None):
    """Load a checkpoint, restoring the given objects in place; returns the whole payload."""
    payload = load(path)
    for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            if name not in payload:
                raise KeyError(f"load_checkpoint: {path} holds no '{name}' state")
            obj.load_state_dict(payload[name])
    return payload
