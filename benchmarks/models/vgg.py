"""VGG-11 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015, config "A").

The CIFAR variant keeps the eight 3x3 conv layers and five max-pools, so a 32x32
input ends at 1x1x512, and replaces the three ImageNet FC layers by a single
512 -> num_classes classifier: about 9.23M parameters for 10 classes.
"""

from torch import nn

from . import register_model

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, layout: tuple, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item),
                           nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_model
def vgg11_bn(num_classes: int = 10) -> nn.Module:
    return VGG(VGG11, num_classes)
