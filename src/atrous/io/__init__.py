"""Reading and writing: checkpoints (no pickle, atomic writes)."""
from .checkpoint import load, load_checkpoint, save, save_checkpoint

__all__ = ["save", "load", "save_checkpoint", "load_checkpoint"]
