"""The default ImageNet recipes: the SAM literature's, since the VaSSO papers' were not
available to us.

The NeurIPS paper reports ImageNet results, but its ImageNet settings were not
available to us as text, and the official code (github.com/BingcongLi/VaSSO) holds
only its transforms (docs/imagenet.md). Every setting below is therefore the SAM
literature's standard, marked *unverified* where it is declared (below), with its
source:

* ResNets: torchvision's reference recipe as the SAM papers run it (Foret et al.
  2021; Kwon et al. 2021): 90 epochs, SGD with momentum 0.9, learning rate 0.1 per
  256 images, 5 warm-up epochs then cosine, weight decay 1e-4, label smoothing 0.1.
* ViTs: Chen, Hsieh & Gong 2022 ("When Vision Transformers Outperform ResNets
  without Pre-training or Strong Data Augmentations"): AdamW, 300 epochs, warm-up then
  cosine, weight decay 0.3, gradient clipping at norm 1.0, batch 4096 with learning
  rate 3e-3, bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sizes import MODELS


@dataclass(frozen=True)
class Recipe:
    """One model family's training recipe (the global batch over all GPUs)."""

    epochs: int
    base: str                  # the base optimizer: "sgd" | "adamw"
    batch_size: int
    lr: float                  # at ``batch_size``
    warmup_epochs: float       # linear warm-up, then cosine to 0
    weight_decay: float
    label_smoothing: float
    clip_grad_norm: float | None  # the descent gradient's global norm, None: no clipping
    precision: str             # "fp32" | "bf16" (autocast)
    rho: float                 # SAM's and VaSSO's radius
    theta: float               # VaSSO's averaging weight

    def lr_at(self, batch_size: int) -> float:
        """The learning rate scaled linearly to another global batch (Goyal et al. 2017)."""
        return self.lr * batch_size / self.batch_size


# Every setting is *unverified* as the VaSSO paper's (its ImageNet settings were not
# available to us); each comment names where the value comes from.
RESNET = Recipe(
    epochs=90,              # *unverified*: torchvision's reference, the SAM paper
    base="sgd",             # *unverified*: SGD with momentum 0.9 (the engine's default momentum)
    batch_size=256,         # *unverified*: the unit of the linear scaling rule
    lr=0.1,                 # *unverified*: 0.1 per 256 images (Goyal et al. 2017)
    warmup_epochs=5,        # *unverified*: Goyal et al. 2017
    weight_decay=1e-4,      # *unverified*: torchvision's reference
    label_smoothing=0.1,    # *unverified*: the SAM paper's ImageNet ResNets
    clip_grad_norm=None,    # *unverified*: none in torchvision's reference
    precision="bf16",       # *unverified*: the SAM paper trained on TPUs; torchvision's reference in fp32
    rho=0.05,               # *unverified*: the SAM paper's ImageNet ResNets
    theta=0.9,              # *unverified*: the official VaSSO code's default
)
VIT = Recipe(
    epochs=300,             # *unverified*: Chen et al. 2022
    base="adamw",           # *unverified*: Chen et al. 2022, betas (0.9, 0.999)
    batch_size=4096,        # *unverified*: Chen et al. 2022
    lr=3e-3,                # *unverified*: Chen et al. 2022, at batch 4096
    warmup_epochs=32,       # *unverified*: Chen et al.'s 10,000 steps of 4096 images, in epochs
    weight_decay=0.3,       # *unverified*: Chen et al. 2022
    label_smoothing=0.0,    # *unverified*: Chen et al. use none
    clip_grad_norm=1.0,     # *unverified*: Chen et al. 2022
    precision="bf16",       # *unverified*: Chen et al. trained on TPUs
    rho=0.05,               # *unverified*: SAM's default; Chen et al. tune it per model
    theta=0.9,              # *unverified*: the official VaSSO code's default
)


def recipe(model: str) -> Recipe:
    """The recipe of an ImageNet model (``resnet*`` or ``vit_*``)."""
    if model.startswith("vit_"):
        return VIT
    if model.startswith("resnet"):
        return RESNET
    raise ValueError(f"no ImageNet recipe for model {model!r}; ImageNet models: {', '.join(MODELS)}")
