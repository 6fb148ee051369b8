"""A small CNN for the 8x8 scikit-learn digits (about 11k parameters).

It has BatchNorm on purpose: the BatchNorm policy of the sharpness-aware
optimizers (statistics from the first pass or both) must matter in the demo too.
"""

from torch import nn

from . import register_model


@register_model
def digits_cnn(num_classes: int = 10, width: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, num_classes),
    )
