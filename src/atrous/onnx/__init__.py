"""ONNX interop: ``load`` an ONNX model as an ``nn.Module``, ``export`` a model to ONNX.

Both need the ``onnx`` package (``pip install atrous[onnx]``); it is imported only when they
are called, so ``import atrous`` stays light.
"""
from .checks import OnnxImportError, OnnxRuntimeError


def load(source, *, base_dir=None):
    """Import an ONNX model (path, bytes or ModelProto) as an ``nn.Module``; see ``importer.load``."""
    from .importer import load as _load

    return _load(source, base_dir=base_dir)


def export(model, path, input_shape, opset=17, **kwargs):
    """Export an atrous model to ONNX; see ``atrous.onnx.exporter.export``."""
    from .exporter import export as _export

    return _export(model, path, input_shape, opset=opset, **kwargs)


__all__ = ["load", "export", "OnnxImportError", "OnnxRuntimeError"]
