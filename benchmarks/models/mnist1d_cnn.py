"""A small 1-D CNN for MNIST-1D's 40-sample signals (about 5k parameters).

Three strided convolutions as in Greydanus & Kobak's CNN baseline, with
BatchNorm added (as in ``digits_cnn``) so that the sharpness-aware optimizers'
BatchNorm policy matters on this task too.
"""

from torch import nn

from . import register_model


@register_model
def mnist1d_cnn(num_classes: int = 10, width: int = 25) -> nn.Module:
    def block(cin: int, cout: int, kernel: int) -> list[nn.Module]:
        return [nn.Conv1d(cin, cout, kernel, stride=2, padding=1, bias=False),
                nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(1, width, 5),      # 40 -> 19
        *block(width, width, 3),  # 19 -> 10
        *block(width, width, 3),  # 10 -> 5
        nn.Flatten(),
        nn.Linear(width * 5, num_classes),
    )
