"""Wide ResNet WRN-28-10 (Zagoruyko & Komodakis 2016) for CIFAR: pre-activation
basic blocks (BN-ReLU-conv), 4 blocks per stage, widths 160/320/640; about 36.5M
parameters. Dropout is off, as in the SAM/VaSSO CIFAR recipes.

Initialisation as the official VaSSO code's (docs/recipe.md), from the reference WRN
code: every conv weight ~ N(0, 2 / (k * k * out_channels)) (He, fan-out), BatchNorm
weight 1 and bias 0, the classifier's bias 0 (its weight keeps PyTorch's default).
"""

import math

from torch import nn
import torch.nn.functional as F

from . import register_model


class WideBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        # The projection takes the pre-activated input, as in the reference WRN code.
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, in_ch = [], widths[0]
        for i, width in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(WideBlock(in_ch, width, stride=2 if i > 0 and j == 0 else 1))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def wrn28_10(num_classes: int = 10) -> nn.Module:
    return WideResNet(28, 10, num_classes)
