"""Model registry: ``create_model(name, num_classes, **kw)``.

One self-contained file per family; each registers its constructors with
:func:`register_model`. CIFAR models take 32x32 inputs, ``digits_cnn`` 8x8; the ImageNet models
(``models.imagenet``) take an ``image_size``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a constructor ``fn(num_classes, **kw)`` under its name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with a ``num_classes``-way classifier."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return _REGISTRY[name](num_classes, **kwargs)


# Imported for their registrations.
from . import digits_cnn, imagenet, mnist1d_cnn, pyramidnet, resnet, vgg, wide_resnet  # noqa: E402,F401
