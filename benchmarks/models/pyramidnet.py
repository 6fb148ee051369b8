"""PyramidNet-110 for CIFAR (Han, Kim & Kim, CVPR 2017), basic-block version.

Depth 110 gives n = 18 basic blocks in each of three stages; the width grows by
alpha / 54 in every block (additive pyramid), rounded down, from 16 to 16 + alpha.
Blocks are BN-conv-BN-ReLU-conv-BN (no first ReLU); the shortcut is identity,
average-pooled when the block downsamples and zero-padded in channels. Published
sizes: 1.7M parameters for alpha = 48, 28.3M for alpha = 270 (paper, Table 4).

*unverified*: the official VaSSO code holds no PyramidNet that we could read (its
models/ folder is not in our index; the upstream it is built on, Mi-Peng/Sparse-
Sharpness-Aware-Minimization, has none), and the paper names only "PyramidNet-110".
Alpha 270 and the basic block are the largest 110-layer model of the PyramidNet paper
(Table 4); ``--pyramidnet-alpha`` changes alpha (docs/recipe.md).
"""

import math

from torch import nn
import torch.nn.functional as F

from . import register_model


class PyramidBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra_ch = stride, out_ch - in_ch
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        out = self.bn3(self.conv2(F.relu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = F.avg_pool2d(x, 2) if self.stride != 1 else x
        if self.extra_ch:  # zero-padded channels: the shortcut has no parameters
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_ch))
        return out + shortcut


class PyramidNet(nn.Module):
    def __init__(self, depth: int, alpha: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"PyramidNet (basic) depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        step = alpha / (3 * n)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        blocks, width, in_ch = [], 16.0, 16
        for stage in range(3):
            for j in range(n):
                width += step
                out_ch = math.floor(width + 1e-9)  # floor, as the authors' Torch code
                blocks.append(PyramidBlock(in_ch, out_ch, 2 if stage > 0 and j == 0 else 1))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def pyramidnet110(num_classes: int = 10, alpha: int = 270) -> nn.Module:
    return PyramidNet(110, alpha, num_classes)
