"""Optimisers and learning-rate schedules with PyTorch's names, arguments and update rules.

>>> import numpy as np, atrous
>>> from atrous import optim
>>> w = atrous.Tensor(np.ones(2, np.float32), requires_grad=True)
>>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
>>> sched = optim.lr_scheduler.StepLR(opt, step_size=10)
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
