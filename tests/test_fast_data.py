"""DeviceCIFAR and the engine's torchvision path against the PIL pipeline they replace.

Three pipelines: ``torchvision``, a reference built here from torchvision's random
transforms and a Cutout written from DeVries & Taylor's description; ``drawn``,
:class:`benchmarks.data.AugmentedImages` (the engine's DataLoader path: the epoch's
shared draw applied per sample with torchvision's functional transforms); and
``device``, :class:`benchmarks.fast.data.DeviceCIFAR` (the same draw, batched).

The source image encodes each pixel's own coordinates (R = 100 + row, G = 100 +
col, B = 200), so every augmented output can be decoded back into the crop
offset, the flip and the cutout square that produced it, whichever pipeline made
it. The tests then compare the decoded distributions with the analytic ones and
with the reference, and check that ``drawn`` and ``device`` give the same images. All seeds are fixed; the tolerances
are a few standard errors wide, while the mistakes they guard against (reflect
padding, a flip rate of 1, an unclipped cutout, offsets in [0, 4]) move the
statistics by many.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from benchmarks.data import (CIFAR100_MEAN, CIFAR100_STD, OFFICIAL_CIFAR_MEAN, OFFICIAL_CIFAR_STD,
                             AugmentedImages, cifar_statistics, epoch_permutation)
from benchmarks.fast.data import (CIFAR10_MEAN, CIFAR10_STD, Augmentation, AugmentationDraw,
                                  DeviceCIFAR, augment, draw_augmentation)

N = 4000          # samples per pipeline: standard error of a rate ~0.008
PAD, SIZE, HALF = 4, 16, 8
MEAN = torch.tensor(CIFAR10_MEAN)[:, None, None]
STD = torch.tensor(CIFAR10_STD)[:, None, None]


def coordinate_image() -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([100 + rows, 100 + cols, np.full_like(rows, 200)], -1).astype(np.uint8)


class ReferenceCutout:
    """DeVries & Taylor: centre uniform over the image, square clipped at the borders."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cy, cx = (int(v) for v in torch.randint(32, (2,)))
        x = x.clone()
        x[:, max(cy - HALF, 0):min(cy + HALF, 32), max(cx - HALF, 0):min(cx + HALF, 32)] = 0
        return x


def torchvision_samples(n: int = N, seed: int = 0) -> torch.Tensor:
    pipeline = transforms.Compose([
        transforms.RandomCrop(32, padding=PAD), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD), ReferenceCutout()])
    image = Image.fromarray(coordinate_image())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([pipeline(image) for _ in range(n)])


# The geometry tests cut every sample (p = 1, like ReferenceCutout); the probability
# (the official 0.5 by default) is tested on its own.
def device_samples(n: int = N, seed: int = 0, **aug) -> torch.Tensor:
    images = np.repeat(coordinate_image()[None], n, axis=0)
    data = DeviceCIFAR(images, np.zeros(n, dtype=np.int64), batch_size=n, seed=seed,
                       augmentation=Augmentation(**{"cutout_prob": 1.0, **aug}))
    (x, _), = list(data.batches(epoch=0))
    return x


def drawn_samples(n: int = N, seed: int = 0) -> torch.Tensor:
    images = np.repeat(coordinate_image()[None], n, axis=0)
    data = AugmentedImages(images, np.zeros(n, dtype=np.int64), mean=CIFAR10_MEAN,
                           std=CIFAR10_STD, augmentation=Augmentation(cutout_prob=1.0), seed=seed)
    return torch.stack([data[(i, 0)][0] for i in range(n)])


def decode(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Recover (offset row, offset col, flip, cut mask) of each sample; checks geometry exactly."""
    cut = (x == 0).all(1)                                               # (n, 32, 32)
    v = torch.round((x * STD + MEAN) * 255)
    image = (v[:, 2] == 200) & ~cut
    padded = (v[:, 2] == 0) & ~cut
    assert torch.equal(image | padded | cut, torch.ones_like(cut)), "pixels that are neither"
    i = torch.arange(32)[:, None].expand(32, 32)
    j = torch.arange(32)[None, :].expand(32, 32)
    oy_map = v[:, 0] - 100 - i + PAD
    plain_map = v[:, 1] - 100 - j + PAD          # ox if not flipped
    flipped_map = v[:, 1] - 100 + j - (31 - PAD)  # ox if flipped

    def constant(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        big = torch.finfo(m.dtype).max
        lo = torch.where(image, m, big).flatten(1).min(1).values
        hi = torch.where(image, m, -big).flatten(1).max(1).values
        return lo, lo == hi

    oy, oy_ok = constant(oy_map)
    ox_plain, plain_ok = constant(plain_map)
    ox_flip, flip_ok = constant(flipped_map)
    assert oy_ok.all(), "rows of one sample disagree on the crop offset"
    assert (plain_ok ^ flip_ok).all(), "columns fit neither (or both) orientations"
    ox = torch.where(flip_ok, ox_flip, ox_plain)
    # Zero padding: exactly the pixels whose source lies outside the image are padding.
    src_r = oy[:, None, None] - PAD + i
    src_c = torch.where(flip_ok[:, None, None], ox[:, None, None] - PAD + (31 - j),
                        ox[:, None, None] - PAD + j)
    outside = (src_r < 0) | (src_r > 31) | (src_c < 0) | (src_c > 31)
    assert torch.equal(padded, outside & ~cut), "padding is not zero padding of the right width"
    return {"oy": oy.long(), "ox": ox.long(), "flip": flip_ok, "cut": cut}


@pytest.fixture(scope="module")
def decoded() -> dict[str, dict[str, torch.Tensor]]:
    return {"torchvision": decode(torchvision_samples()), "drawn": decode(drawn_samples()),
            "device": decode(device_samples())}


PATHS = ["torchvision", "drawn", "device"]


def chi_square_uniform(values: torch.Tensor, cells: int) -> float:
    counts = torch.bincount(values, minlength=cells).double()
    expected = len(values) / cells
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("path", PATHS)
def test_crop_offsets_are_uniform_over_the_9x9_grid(decoded, path):
    d = decoded[path]
    assert int(d["oy"].min()) == 0 and int(d["oy"].max()) == 2 * PAD
    assert int(d["ox"].min()) == 0 and int(d["ox"].max()) == 2 * PAD
    cell = d["oy"] * (2 * PAD + 1) + d["ox"]
    # chi^2 with 80 degrees of freedom: 124.8 is the 0.1% critical value.
    assert chi_square_uniform(cell, (2 * PAD + 1) ** 2) < 124.8
    # Rows and columns are drawn independently: no correlation.
    corr = torch.corrcoef(torch.stack([d["oy"].double(), d["ox"].double()]))[0, 1]
    assert abs(float(corr)) < 0.06


@pytest.mark.parametrize("path", PATHS)
def test_flip_rate_is_one_half(decoded, path):
    rate = decoded[path]["flip"].double().mean()
    assert abs(float(rate) - 0.5) < 0.03          # 4 standard errors at N = 4000


def analytic_cut_probability() -> torch.Tensor:
    """P(pixel (i, j) is cut) for a centre uniform over 0..31 and the square [c-8, c+8)."""
    c = torch.arange(32)
    per_axis = torch.tensor([float(((c - HALF <= k) & (k < c + HALF)).sum()) / 32
                             for k in range(32)])
    return per_axis[:, None] * per_axis[None, :]


@pytest.mark.parametrize("path", PATHS)
def test_cutout_size_and_placement(decoded, path):
    cut = decoded[path]["cut"]
    area = cut.flatten(1).sum(1).double()
    # The clipped side has mean 448 / 32 = 14 and the axes are independent: E[area] = 196.
    assert abs(float(area.mean()) - 196.0) < 4.0
    # Unclipped iff 8 <= centre <= 24 on both axes: (17/32)^2.
    assert abs(float((area == SIZE * SIZE).double().mean()) - (17 / 32) ** 2) < 0.03
    # Every cut region is one axis-aligned rectangle: its area is the product of its extents.
    rows_hit, cols_hit = cut.any(2).sum(1), cut.any(1).sum(1)
    assert torch.equal((rows_hit * cols_hit).double(), area)
    # Per axis the side is 16, or clipped down to 8 (centre 0) at the least: each side
    # length 8..16 turns up (the rarest, 8, has probability 1/32 per sample). A corner
    # square of 8 x 8 needs both (1/1024): too rare to demand at any seed.
    for hit in (rows_hit, cols_hit):
        assert set(hit.tolist()) == set(range(HALF, SIZE + 1))
    assert int(area.max()) == SIZE * SIZE and int(area.min()) >= HALF * HALF
    # Where the cut falls, pixel by pixel.
    empirical = cut.double().mean(0)
    assert float((empirical - analytic_cut_probability().double()).abs().max()) < 0.04


def test_cutout_probability_is_respected():
    cut = decode(device_samples(n=2000, cutout_prob=0.5))["cut"]
    assert abs(float(cut.flatten(1).any(1).double().mean()) - 0.5) < 0.045


@pytest.mark.parametrize("samples", [device_samples, drawn_samples])
def test_per_pixel_mean_matches_torchvision(samples):
    tv, ours = torchvision_samples(), samples()
    assert float((tv.mean(0) - ours.mean(0)).abs().max()) < 0.15
    # The two pipelines overall: same mean and spread within a few standard errors.
    assert abs(float(tv.mean() - ours.mean())) < 0.02
    assert abs(float(tv.std() - ours.std())) < 0.02


@pytest.mark.parametrize("cutout_prob", [1.0, 0.5, 0.0])
def test_device_and_torchvision_paths_apply_the_same_draws(cutout_prob):
    """Batches of DeviceCIFAR equal the AugmentedImages samples of the same keys."""
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (48, 32, 32, 3), dtype=torch.uint8, generator=g)
    drawn = AugmentedImages(images, torch.arange(48), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                            augmentation=Augmentation(cutout_prob=cutout_prob), seed=9)
    device = DeviceCIFAR.from_dataset(drawn, batch_size=16, seed=2)
    for epoch in (0, 3):
        order = epoch_permutation(48, 2, epoch)
        for k, (x, y) in enumerate(device.batches(epoch)):
            keys = order[16 * k:16 * (k + 1)].tolist()
            assert y.tolist() == keys
            expected = torch.stack([drawn[(i, epoch)][0] for i in keys])
            torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    # The draw really depends on the augmentation seed: another one gives other images.
    other = DeviceCIFAR.from_dataset(
        AugmentedImages(images, torch.arange(48), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                        augmentation=Augmentation(cutout_prob=cutout_prob), seed=10),
        batch_size=16, seed=2)
    assert not torch.equal(next(device.batches(0))[0], next(other.batches(0))[0])


def test_a_training_split_is_shuffled_even_without_augmentation():
    """from_dataset with a seed is a training split: shuffled and full batches, as the
    DataLoader path, whatever the augmentation; without a seed every sample in order."""
    images = torch.zeros(10, 32, 32, 3, dtype=torch.uint8)
    plain = AugmentedImages(images, torch.arange(10), mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert plain.augmentation.is_identity
    train = DeviceCIFAR.from_dataset(plain, batch_size=4, seed=2)
    labels = [y.tolist() for _, y in train.batches(0)]
    order = epoch_permutation(10, 2, 0).tolist()
    assert labels == [order[0:4], order[4:8]]  # shuffled, the last partial batch dropped
    test = DeviceCIFAR.from_dataset(plain, batch_size=4)
    assert [y.tolist() for _, y in test.batches(0)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def naive_augment(image: torch.Tensor, oy: int, ox: int, flip: bool, cy: int, cx: int,
                  cut: bool) -> torch.Tensor:
    """One HWC uint8 image through pad -> crop -> flip -> normalise -> cutout, by slicing."""
    chw = F.pad(image.permute(2, 0, 1), (PAD, PAD, PAD, PAD))[:, oy:oy + 32, ox:ox + 32]
    if flip:
        chw = chw.flip(-1)
    x = (chw.float() / 255 - MEAN) / STD
    if cut:
        x[:, max(cy - HALF, 0):cy + HALF, max(cx - HALF, 0):cx + HALF] = 0
    return x


def test_augment_equals_per_image_slicing():
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (24, 32, 32, 3), dtype=torch.uint8, generator=g)
    draw = draw_augmentation(24, Augmentation(cutout_prob=0.5), 32, 32, g)
    index = torch.randperm(24, generator=g)[:16]
    std = torch.tensor(CIFAR10_STD)
    x = augment(images, draw[:16], padding=PAD, cutout_size=SIZE, scale=1 / (255 * std),
                shift=-torch.tensor(CIFAR10_MEAN) / std, index=index)
    expected = torch.stack([
        naive_augment(images[int(index[k])], *draw.offsets[k].tolist(), bool(draw.flip[k]),
                      *draw.cutout_centre[k].tolist(), bool(draw.cutout[k])) for k in range(16)])
    assert x.shape == (16, 3, 32, 32)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def make_data(n=40, **kw) -> DeviceCIFAR:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    kw.setdefault("augmentation", Augmentation())
    return DeviceCIFAR(images, torch.arange(n), batch_size=8, seed=5, **kw)


def test_epoch_order_is_the_engine_permutation_and_resumable():
    data = make_data()
    assert len(data) == 5
    labels = torch.cat([y for _, y in data.batches(epoch=2)])
    assert torch.equal(labels, epoch_permutation(40, 5, 2))
    assert not torch.equal(labels, torch.cat([y for _, y in data.batches(epoch=3)]))
    full = list(data.batches(epoch=2))
    again = list(make_data().batches(epoch=2))
    resumed = list(data.batches(epoch=2, start=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, again))
    assert len(resumed) == 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(full[3:], resumed))
    stopped = list(data.batches(epoch=2, start=1, stop=3))
    assert len(stopped) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(full[1:3], stopped))


def test_evaluation_batches_are_plain_normalised_and_complete():
    g = torch.Generator().manual_seed(2)
    nchw = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    data = DeviceCIFAR(nchw, torch.arange(20), batch_size=8)
    batches = list(data.batches())
    assert len(data) == 3 and [len(y) for _, y in batches] == [8, 8, 4]
    x = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(x, (nchw.float() / 255 - MEAN) / STD, atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.arange(20))


@pytest.mark.parametrize("channels_last", [False, True])
def test_memory_format(channels_last):
    x, _ = next(make_data(channels_last=channels_last).batches())
    assert x.shape == (8, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert x.is_contiguous() != channels_last


def test_bad_input_is_a_clear_error():
    images = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        DeviceCIFAR(images.float(), [0] * 4, batch_size=2)
    with pytest.raises(ValueError, match="channel axis"):
        DeviceCIFAR(torch.zeros(4, 32, 32, 5, dtype=torch.uint8), [0] * 4, batch_size=2)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        DeviceCIFAR(images, [0] * 3, batch_size=2)
    with pytest.raises(ValueError, match="no full batch"):
        DeviceCIFAR(images, [0] * 4, batch_size=8, augmentation=Augmentation())
    with pytest.raises(ValueError, match="cutout_prob"):
        Augmentation(cutout_prob=1.5)
    with pytest.raises(TypeError, match="AugmentedImages"):
        DeviceCIFAR.from_dataset(torch.utils.data.TensorDataset(images), batch_size=2)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_official_recipe_is_the_same_images_on_both_paths(dataset):
    """The official code's data decisions, applied alike by AugmentedImages and DeviceCIFAR:
    its CIFAR-10 statistics for either dataset, Cutout with probability 0.5 by default, and
    the patch zeroed after normalisation (0 in normalised space, not a black pixel)."""
    mean, std = cifar_statistics(dataset, "official")
    assert (mean, std) == (OFFICIAL_CIFAR_MEAN, OFFICIAL_CIFAR_STD)
    assert [round(255 * m, 1) for m in mean] == [125.3, 123.0, 113.9]
    assert [round(255 * s, 1) for s in std] == [63.0, 62.1, 66.7]
    assert Augmentation().cutout_prob == 0.5 and Augmentation().cutout_size == 16
    n = 400
    # Mid-grey images: a black pixel normalises far from 0, so a zero can only be a cut.
    images = torch.full((n, 32, 32, 3), 128, dtype=torch.uint8)
    drawn = AugmentedImages(images, torch.arange(n), mean=mean, std=std,
                            augmentation=Augmentation(crop_padding=0, flip=False), seed=1)
    device = DeviceCIFAR.from_dataset(drawn, batch_size=n, seed=0)
    (x, keys), = list(device.batches(epoch=0))
    expected = torch.stack([drawn[(i, 0)][0] for i in keys.tolist()])
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    cut = (x == 0).all(1).flatten(1).any(1)
    # Binomial(400, 0.5): 0.5 +- 0.1 is five standard errors.
    assert 0.4 < float(cut.double().mean()) < 0.6
    grey = (128 / 255 - torch.tensor(mean)) / torch.tensor(std)
    kept = x[~cut]
    torch.testing.assert_close(kept, grey[None, :, None, None].expand_as(kept), atol=1e-5, rtol=0)
    # The statistics differ from CIFAR-100's own, which "dataset" picks.
    assert cifar_statistics("cifar100", "dataset") == (CIFAR100_MEAN, CIFAR100_STD) != (mean, std)
