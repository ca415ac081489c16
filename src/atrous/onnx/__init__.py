"""ONNX interop: ``load`` an ONNX model as an ``nn.Module``, ``export`` a model to ONNX.

Both need the ``onnx`` package (``pip install atrous[onnx]``); it is imported only when they
are called, so ``import atrous`` stays light.
"""
from .checks import OnnxImportError, OnnxRuntimeError


def load(source, *, base_dir=None):
    """Import an ONNX model (path, bytes or ModelProto) as an ``nn.Module``; see ``importer.load``."""
    from .importer import load as _load

    return _load(source, base_dir=base_dir)


def export(*args, **kwargs):
    """Export an atrous model to ONNX; see ``atrous.onnx.export.export``."""
    import importlib

    fn = importlib.import_module(".export", __name__).export
    # Importing the submodule binds the package attribute ``export`` to the module; keep the
    # function there (``from atrous.onnx.export import export`` still reaches the module's).
    globals()["export"] = _export_entry
    return fn(*args, **kwargs)


_export_entry = export


__all__ = ["load", "export", "OnnxImportError", "OnnxRuntimeError"]
