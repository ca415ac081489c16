"""One SGD training step (forward, loss, backward, update), atrous vs PyTorch, same process.

Networks: a CIFAR-style ResNet (3 stages of 2 basic blocks, widths 16/32/64, batch 32, 32x32
input) and resnet18 at batch 8 on 224x224. Both sides build the same architecture from the
same code (the two ``nn`` namespaces share names and signatures), load the same weights, and
run with 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/train_step.py
"""
from __future__ import annotations

import os
import sys

import numpy as np

from common import geomean, header, median_ms


def cifar_resnet(nn, relu, widths=(16, 32, 64), blocks=2, num_classes=10):
    """He et al.'s CIFAR ResNet, written once for either ``nn`` namespace."""

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return relu(out + identity)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            layers, cin = [], widths[0]
            for i, w in enumerate(widths):
                for b in range(blocks):
                    layers.append(Block(cin, w, 2 if (i > 0 and b == 0) else 1))
                    cin = w
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.layers(relu(self.bn1(self.conv1(x))))
            return self.fc(self.pool(x).reshape(x.shape[0], -1))

    return Net()


def step_fns(name, batch, size, classes):
    import torch

    import atrous
    import atrous.functional as AF
    from atrous import models, nn, optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    if name == "cifar_resnet":
        a_model = cifar_resnet(nn, AF.relu)
        t_model = cifar_resnet(torch.nn, torch.relu)
    else:
        a_model = models.resnet18()
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from torch_reference_models import resnet18 as torch_resnet18

        t_model = torch_resnet18()
    a_model.load_state_dict({k: v.detach().numpy().copy() for k, v in t_model.state_dict().items()})
    a_opt = optim.SGD(a_model.parameters(), lr=0.01, momentum=0.9)
    t_opt = torch.optim.SGD(t_model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def a_step():
        loss = AF.cross_entropy(a_model(atrous.Tensor(x)), y)
        a_opt.zero_grad()
        loss.backward()
        a_opt.step()

    def t_step():
        loss = torch.nn.functional.cross_entropy(t_model(tx), ty)
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()

    return a_step, t_step


def main():
    header("One SGD training step, atrous vs torch (ms, median)")
    rows = []
    for name, batch, size, classes, repeat in (("cifar_resnet", 32, 32, 10, 15), ("resnet18", 8, 224, 1000, 5)):
        a_step, t_step = step_fns(name, batch, size, classes)
        a = median_ms(a_step, repeat=repeat)
        t = median_ms(t_step, repeat=repeat)
        rows.append((name, batch, size, a, t, a / t))
    print(f"{'network':<14}{'batch':>6}{'size':>6}{'atrous ms':>12}{'torch ms':>11}{'ratio':>8}")
    for name, batch, size, a, t, r in rows:
        print(f"{name:<14}{batch:>6}{size:>6}{a:>12.1f}{t:>11.1f}{r:>8.2f}")
    print(f"geometric mean ratio: {geomean(r[-1] for r in rows):.2f}")


if __name__ == "__main__":
    main()
