"""Reading and writing: checkpoints (no pickle, atomic writes), PyTorch and safetensors weights."""
from .checkpoint import load, load_checkpoint, save, save_checkpoint
from .safetensors_io import load_safetensors, save_safetensors
from .torch_pickle import UnsafeCheckpointError, load_torch_state_dict

__all__ = [
    "save",
    "load",
    "save_checkpoint",
    "load_checkpoint",
    "load_torch_state_dict",
    "UnsafeCheckpointError",
    "save_safetensors",
    "load_safetensors",
]
