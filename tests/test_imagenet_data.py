"""ImageNet's transforms and its two data paths (benchmarks/imagenet/), and its models,
on a tiny ImageFolder of real JPEG files."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from benchmarks.imagenet.data import DeviceDecoder, ImageNetSplit, collate_encoded, decode
from benchmarks.imagenet.transforms import MEAN, STD, apply_train, normalise, random_resized_crop, train_crop
from benchmarks.models import create_model
from benchmarks.imagenet.sizes import image_size_problem
from imagenet_fixtures import WNIDS, write_train

SEED, EPOCH, SIZE = 7, 3, 32


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_train(root, per_class=3)
    return root / "imagenet" / "train"


def through_loader_path(folder, keys, train: bool) -> torch.Tensor:
    split = ImageNetSplit(folder, size=SIZE, train=train, seed=SEED)
    return torch.stack([split[key][0] for key in keys])


def through_device_path(folder, keys, train: bool, device: str) -> torch.Tensor:
    split = ImageNetSplit(folder, size=SIZE, train=train, seed=SEED, encoded=True)
    batch = collate_encoded([split[key] for key in keys])
    assert batch.labels.tolist() == [split.targets[i] for i, _ in keys] and batch.train == train
    out = DeviceDecoder(device, size=SIZE, seed=SEED)(batch)
    assert out.device.type == torch.device(device).type and out.dtype == torch.uint8
    return out.cpu()


def assert_paths_agree(folder, device: str) -> None:
    """Both paths apply the same crop decisions: the same pixels up to the decoders' and
    resamplers' rounding (a level or two of 255), while the next epoch's decisions, on
    the same images, are far off."""
    keys = [(i, EPOCH) for i in range(9)]
    loader = through_loader_path(folder, keys, train=True).float()
    device_path = through_device_path(folder, keys, train=True, device=device).float()
    assert loader.shape == device_path.shape == (9, 3, SIZE, SIZE)
    assert (loader - device_path).abs().mean() < 1.0
    shifted = through_device_path(folder, [(i, EPOCH + 1) for i in range(9)], train=True,
                                  device=device).float()
    assert (loader - shifted).abs().mean() > 10.0
    evaluation = through_loader_path(folder, range(9), train=False).float()
    assert (evaluation - through_device_path(folder, [(i, 0) for i in range(9)], train=False,
                                             device=device).float()).abs().mean() < 1.0


def test_the_two_paths_apply_the_same_crop_decisions_cpu(train_dir):
    assert_paths_agree(train_dir, "cpu")


def test_the_two_paths_apply_the_same_crop_decisions_cuda(train_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: nvJPEG decoding and the crops on the GPU")
    assert_paths_agree(train_dir, "cuda")


@pytest.mark.parametrize("height, width", [(375, 500), (500, 333), (64, 64), (40, 400), (400, 40)])
def test_the_crop_is_torchvisions_algorithm(height, width):
    """RandomResizedCrop.get_params on the global RNG and ours on a generator with the
    same seed draw the same windows (the last two shapes reach the fallback)."""
    for seed in range(20):
        torch.manual_seed(seed)
        expected = T.RandomResizedCrop.get_params(torch.empty(3, height, width), [0.08, 1.0],
                                                  [3 / 4, 4 / 3])
        assert random_resized_crop(height, width, torch.Generator().manual_seed(seed)) == expected


def test_crop_decisions_are_pure_functions_of_seed_epoch_and_index():
    crop = train_crop(SEED, EPOCH, 5, 375, 500)
    assert train_crop(SEED, EPOCH, 5, 375, 500) == crop
    others = {train_crop(SEED, EPOCH + 1, 5, 375, 500), train_crop(SEED, EPOCH, 6, 375, 500),
              train_crop(SEED + 1, EPOCH, 5, 375, 500)}
    assert crop not in others
    flips = [train_crop(SEED, EPOCH, i, 375, 500).flip for i in range(400)]
    assert 160 < sum(flips) < 240  # a fair coin


def test_the_loader_path_is_torchvisions_official_transforms(train_dir):
    """Evaluation: exactly Resize(256) + CenterCrop(224) + ToTensor + Normalize; training:
    torchvision's resized_crop and hflip with the drawn decision."""
    split = ImageNetSplit(train_dir, size=224, train=False)
    official = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    for index in (0, 4):
        path, label = split.folder.samples[index]
        image, target = split[index]
        assert target == label
        expected = official(Image.open(path).convert("RGB"))
        torch.testing.assert_close(normalise(image[None])[0], expected, atol=1e-5, rtol=0)
    train = ImageNetSplit(train_dir, size=SIZE, train=True, seed=SEED)
    pil = Image.open(train.folder.samples[2][0]).convert("RGB")
    crop = train_crop(SEED, EPOCH, 2, pil.height, pil.width)
    expected = T.functional.resized_crop(pil, crop.top, crop.left, crop.height, crop.width,
                                         [SIZE, SIZE])
    if crop.flip:
        expected = T.functional.hflip(expected)
    assert torch.equal(train[(2, EPOCH)][0], T.functional.pil_to_tensor(expected))
    assert apply_train(pil, crop, SIZE).size == (SIZE, SIZE)


def test_classes_are_imagefolders_sorted_wnids(train_dir):
    split = ImageNetSplit(train_dir, size=SIZE, train=True)
    assert split.classes == sorted(WNIDS) and len(split) == 9
    assert sorted(set(split.targets)) == [0, 1, 2]


def test_a_png_under_a_jpeg_name_is_decoded_by_the_fallback(tmp_path):
    """ImageNet holds a PNG named .JPEG (and CMYK JPEGs): the batched decode fails, the
    file is decoded alone, and the batch comes back whole and in order."""
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(3)]
    paths = []
    for k, array in enumerate(pixels):
        paths.append(tmp_path / f"{k}.JPEG")
        Image.fromarray(array).save(paths[-1], format="PNG" if k == 1 else "JPEG", quality=95)
    images = decode([p.read_bytes() for p in paths], "cpu")
    assert [tuple(i.shape) for i in images] == [(3, 20, 30)] * 3
    assert torch.equal(images[1], torch.from_numpy(pixels[1]).permute(2, 0, 1))  # PNG: lossless


def test_normalise_matches_totensor_and_normalize():
    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    expected = T.Normalize(MEAN, STD)(images.float() / 255)
    torch.testing.assert_close(normalise(images), expected, atol=1e-5, rtol=0)
    assert normalise(images, channels_last=True).is_contiguous(memory_format=torch.channels_last)


# -- models -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, published", [
    ("resnet18_imagenet", 11_689_512),  # torchvision's model card
    ("resnet50", 25_557_032),           # torchvision's model card
    ("vit_s32", 22_878_952),            # timm vit_small_patch32_224
    ("vit_s16", 22_050_664),            # timm vit_small_patch16_224 (DeiT-S size)
    ("vit_b32", 88_224_232),            # timm vit_base_patch32_224
])
def test_imagenet_models_have_the_published_sizes(name, published):
    model = create_model(name, 1000)
    assert sum(p.numel() for p in model.parameters()) == published


@pytest.mark.parametrize("name, size", [("resnet18_imagenet", 64), ("vit_s32", 64),
                                        ("vit_s16", 32)])
def test_imagenet_models_take_their_input_size(name, size):
    model = create_model(name, 5, image_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name, size, message", [
    ("vit_s32", 100, "multiple of 32; got 100 (use 96 or 128)"),
    ("vit_s16", 8, "multiple of 16; got 8 (use 16 or 32)"),
    ("resnet50", 16, "at least 32; got 16"),
])
def test_an_input_size_a_model_cannot_take_is_one_line(name, size, message):
    assert message in image_size_problem(name, size)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_model(name, 5, image_size=size)
    assert image_size_problem(name, 224) is None


def test_both_paths_serve_the_same_batches_from_dataloader_workers(train_dir):
    """In worker processes (the dataset and its keys pickled) as in the main process."""
    from torch.utils.data import DataLoader

    keys = [[(i, EPOCH) for i in (4, 0, 7)], [(i, EPOCH) for i in (2, 8, 1)]]
    split = ImageNetSplit(train_dir, size=SIZE, train=True, seed=SEED)
    served = [x for x, _ in DataLoader(split, batch_sampler=keys, num_workers=1)]
    for batch, got in zip(keys, served):
        assert torch.equal(got, through_loader_path(train_dir, batch, train=True))
    encoded = ImageNetSplit(train_dir, size=SIZE, train=True, seed=SEED, encoded=True)
    decoder = DeviceDecoder("cpu", size=SIZE, seed=SEED)
    loader = DataLoader(encoded, batch_sampler=keys, num_workers=1, collate_fn=collate_encoded)
    for batch, served in zip(keys, loader):
        assert served.keys.tolist() == [list(k) for k in batch] and served.train
        assert torch.equal(decoder(served), through_device_path(train_dir, batch, True, "cpu"))
