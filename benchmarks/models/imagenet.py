"""ImageNet models: torchvision's ResNets and timm's Vision Transformers, randomly initialised.

``resnet18_imagenet`` and ``resnet50`` are torchvision's definitions (7x7 stem with
stride 2 and a max-pool, bottleneck blocks for ResNet-50; ``weights=None``): the
CIFAR ``resnet18`` of this registry is another network (a 3x3 stem, no max-pool).
``vit_s32``, ``vit_s16`` and ``vit_b32`` are timm's ``vit_small_patch32_224``,
``vit_small_patch16_224`` and ``vit_base_patch32_224`` (``pretrained=False``: nothing
is downloaded; timm's own initialisation), built for the run's input size.

Every constructor takes ``image_size`` (the side of the square training crop). A ViT
takes only a multiple of its patch size, a ResNet any size down to 32
(:func:`benchmarks.imagenet.sizes.image_size_problem`).
"""

from __future__ import annotations

from torch import nn

from ..imagenet.sizes import VITS, image_size_problem
from . import register_model


def _checked(model: str, image_size: int) -> None:
    problem = image_size_problem(model, image_size)
    if problem:
        raise ValueError(problem)


def _vit(name: str, num_classes: int, image_size: int) -> nn.Module:
    import timm  # imported here: the CIFAR tasks and the optimizer library do not need it

    _checked(name, image_size)
    return timm.create_model(VITS[name][0], pretrained=False, num_classes=num_classes,
                             img_size=image_size)


@register_model
def resnet18_imagenet(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    from torchvision.models import resnet18

    _checked("resnet18_imagenet", image_size)
    return resnet18(weights=None, num_classes=num_classes)


@register_model
def resnet50(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    from torchvision.models import resnet50 as torchvision_resnet50

    _checked("resnet50", image_size)
    return torchvision_resnet50(weights=None, num_classes=num_classes)


@register_model
def vit_s32(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    return _vit("vit_s32", num_classes, image_size)


@register_model
def vit_s16(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    return _vit("vit_s16", num_classes, image_size)


@register_model
def vit_b32(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    return _vit("vit_b32", num_classes, image_size)
