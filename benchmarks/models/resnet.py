"""ResNet-18 for CIFAR (He et al. 2016): a 3x3 stem with stride 1 and no max-pool,
four stages of two basic blocks (64, 128, 256, 512 channels); about 11.17M parameters.
The official VaSSO code's definition (docs/recipe.md): the same layers, a 4x4 average
pool (the global one at 32x32 input) and PyTorch's default initialisation.
"""

from torch import nn
import torch.nn.functional as F

from . import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:  # projection shortcut (option B)
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks_per_stage: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        stages, in_ch = [], 64
        for i, n in enumerate(blocks_per_stage):
            out_ch = 64 * 2**i
            for j in range(n):
                stages.append(BasicBlock(in_ch, out_ch, stride=2 if i > 0 and j == 0 else 1))
                in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        out = self.stages(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def resnet18(num_classes: int = 10) -> nn.Module:
    return ResNet((2, 2, 2, 2), num_classes)
