"""Model registry and sizes against published parameter counts (benchmarks/models)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.config import TASK_MODELS
from benchmarks.models import create_model, list_models


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, kwargs, published, tolerance, source", [
    # He et al. 2016 ResNet-18 in its CIFAR form (3x3 stem, no max-pool), 10 classes:
    # 11.17M, the figure every CIFAR SAM paper quotes (e.g. kuangliu/pytorch-cifar).
    ("resnet18", {}, 11.17e6, 0.01, "CIFAR ResNet-18, 11.17M"),
    # Zagoruyko & Komodakis 2016, Table 1 / README: WRN-28-10 has 36.5M parameters.
    ("wrn28_10", {}, 36.5e6, 0.01, "WRN paper: 36.5M"),
    # VGG-11-BN, CIFAR variant with a single 512 -> 10 classifier: 9.23M (9.2M).
    ("vgg11_bn", {}, 9.2e6, 0.01, "CIFAR VGG-11-BN, 9.2M"),
    # Han, Kim & Kim 2017 (PyramidNet), Table 4: 110 layers, alpha 48: 1.7M;
    # alpha 270: 28.3M. The 1.7M is rounded to 0.1M, hence the looser bound.
    ("pyramidnet110", {"alpha": 48}, 1.7e6, 0.03, "PyramidNet paper: 1.7M"),
    ("pyramidnet110", {"alpha": 270}, 28.3e6, 0.01, "PyramidNet paper: 28.3M"),
])
def test_parameter_counts_match_published_figures(name, kwargs, published, tolerance, source):
    count = num_params(create_model(name, 10, **kwargs))
    assert abs(count - published) / published < tolerance, f"{name}: {count} vs {source}"


def test_classifier_follows_num_classes():
    ten, hundred = create_model("resnet18", 10), create_model("resnet18", 100)
    assert num_params(hundred) - num_params(ten) == 90 * (512 + 1)


@pytest.mark.parametrize("name, shape", [("digits_cnn", (4, 1, 8, 8)),
                                         ("resnet18", (2, 3, 32, 32)),
                                         ("vgg11_bn", (2, 3, 32, 32))])
def test_forward_shapes(name, shape):
    model = create_model(name, 7).eval()
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (shape[0], 7)


def test_pyramidnet_widens_additively_to_16_plus_alpha():
    model = create_model("pyramidnet110", 10, alpha=48)
    widths = [block.conv1.out_channels for block in model.blocks]
    assert len(widths) == 54 and widths[-1] == 16 + 48
    assert all(0 <= b - a <= 1 for a, b in zip(widths, widths[1:]))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_every_task_model_is_registered():
    for models in TASK_MODELS.values():
        assert set(models) <= set(list_models())


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid models: .*resnet18.*wrn28_10"):
        create_model("resnet50", 10)
