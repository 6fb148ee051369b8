"""Which input sizes the ImageNet models take (without importing torch: the config checks
a cell with it before anything is loaded).

A ViT cuts the image into patches and would silently drop the pixels of a side that is
not a multiple of its patch size, so such a size is refused; a ResNet takes any size
down to 32 (its total stride).
"""

from __future__ import annotations

# name -> (timm's name, patch size)
VITS = {"vit_s32": ("vit_small_patch32_224", 32), "vit_s16": ("vit_small_patch16_224", 16),
        "vit_b32": ("vit_base_patch32_224", 32)}
RESNETS = ("resnet18_imagenet", "resnet50")
MODELS = (*RESNETS, *VITS)
RESNET_STRIDE = 32


def image_size_problem(model: str, image_size: int) -> str | None:
    """Why ``model`` cannot take square ``image_size`` inputs, in one line; None when it can."""
    if model in VITS:
        patch = VITS[model][1]
        if image_size < patch or image_size % patch:
            lower = max(patch, image_size // patch * patch)
            return (f"{model} cuts images into {patch}x{patch} patches, so its input size must be "
                    f"a multiple of {patch}; got {image_size} (use {lower} or {lower + patch})")
    elif image_size < RESNET_STRIDE:
        return f"{model} downsamples by {RESNET_STRIDE}: its input size must be at least 32; got {image_size}"
    return None
