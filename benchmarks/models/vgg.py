"""VGG-11 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015, config "A").

As the official VaSSO code defines it (docs/recipe.md): the eight 3x3 conv layers
(with bias) + BatchNorm + ReLU and five max-pools, so a 32x32 input ends at
1x1x512, then the VGG classifier scaled to that input: 512 -> 4096 -> 4096 ->
num_classes with ReLU and Dropout(0.5) between; PyTorch's default initialisation.
About 28.15M parameters for 10 classes (the 9.23M of the features, 18.9M of the
classifier).
"""

from torch import nn

from . import register_model

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
HIDDEN = 4096


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
        # Dropout draws from the torch RNG: each pass of a sharpness-aware step gets its
        # own mask, as in the official code (its closure reruns the forward pass).
        self.classifier = nn.Sequential(
            nn.Linear(channels, HIDDEN), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(HIDDEN, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_model
def vgg11_bn(num_classes: int = 10) -> nn.Module:
    return VGG(VGG11, num_classes)
