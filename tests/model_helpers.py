"""Small helpers shared by the model tests (zoo and segmentation)."""
import numpy as np


def n_params(model):
    return sum(int(np.asarray(p).size) for p in model.parameters())


def shapes(state_dict):
    """(key, shape) pairs in order; values may be torch tensors, Tensors or arrays."""
    return [(k, tuple(v.shape)) for k, v in state_dict.items()]


def to_numpy_state(torch_model):
    return {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}


def relative_error(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
