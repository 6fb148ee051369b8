"""Label noise, Cutout, the resumable batch order and the digits split (benchmarks/data.py)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.config import TrainConfig
from benchmarks.data import (Augmentation, AugmentedImages, Cutout, corrupt_labels, derive_seed,
                             epoch_augmentation, epoch_batches, epoch_permutation)
from benchmarks.tasks import get_task
from benchmarks.tasks.base import data_seed, noisy_labels


@pytest.mark.parametrize("n, rate, classes", [(1000, 0.2, 10), (1347, 0.4, 10), (37, 0.5, 100),
                                              (10, 0.0, 10), (50, 0.98, 2)])
def test_label_noise_exact_fraction_and_always_another_class(n, rate, classes):
    labels = torch.randint(classes, (n,), generator=torch.Generator().manual_seed(n))
    noisy, indices = corrupt_labels(labels, classes, rate, seed=7)
    assert len(indices) == round(rate * n) == int((noisy != labels).sum())
    assert (noisy[indices] != labels[indices]).all()
    assert torch.equal(torch.unique(indices), indices)  # distinct, sorted
    assert noisy.min() >= 0 and noisy.max() < classes


def test_label_noise_new_labels_are_uniform_over_other_classes():
    labels = torch.zeros(20000, dtype=torch.int64)
    noisy, indices = corrupt_labels(labels, 5, 0.5, seed=3)
    counts = torch.bincount(noisy[indices], minlength=5)
    assert counts[0] == 0
    assert ((counts[1:] - 2500).abs() < 200).all()  # 4 classes x 2500 expected, std ~43


def test_label_noise_depends_on_dataset_rate_and_seed_index_only():
    labels = torch.arange(1347) % 10
    base = TrainConfig("digits", label_noise=0.3)
    same = [TrainConfig("digits", label_noise=0.3, optimizer=o, lr=0.2, rho=0.2, epochs=3)
            for o in ("sam", "vasso", "asam")]
    reference, _ = noisy_labels(base, labels, 10)
    for cfg in same:
        assert torch.equal(noisy_labels(cfg, labels, 10)[0], reference)
    assert not torch.equal(noisy_labels(TrainConfig("digits", label_noise=0.3, seed=1),
                                        labels, 10)[0], reference)
    # Not from the model either: every model of a CIFAR noise table sees the same labels.
    cifar_labels = torch.arange(500) % 10
    a = noisy_labels(TrainConfig("cifar", model="resnet18", label_noise=0.2), cifar_labels, 10)[0]
    b = noisy_labels(TrainConfig("cifar", model="vgg11_bn", label_noise=0.2), cifar_labels, 10)[0]
    assert torch.equal(a, b)


def test_clean_labels_give_an_empty_record():
    labels = torch.arange(10)
    out, record = noisy_labels(TrainConfig("digits"), labels, 10)
    assert torch.equal(out, labels) and record == {}


def test_label_noise_on_digits_leaves_the_test_set_clean():
    clean = get_task("digits").load_data(TrainConfig("digits"))
    noisy = get_task("digits").load_data(TrainConfig("digits", label_noise=0.2))
    changed = (noisy.train.targets != clean.train.targets).nonzero().flatten()
    assert len(changed) == round(0.2 * 1347)
    assert changed.tolist() == noisy.record["noisy_labels"]["indices"]
    assert torch.equal(noisy.test.targets, clean.test.targets)


def test_digits_split_is_fixed_and_stratified():
    a = get_task("digits").load_data(TrainConfig("digits", seed=0))
    b = get_task("digits").load_data(TrainConfig("digits", seed=5))
    assert (len(a.train), len(a.test)) == (1347, 450)
    assert torch.equal(a.test.inputs, b.test.inputs) and torch.equal(a.train.targets, b.train.targets)
    per_class = torch.bincount(a.test.targets, minlength=10)
    assert per_class.min() >= 43 and per_class.max() <= 47  # 450 / 10, stratified
    assert abs(float(a.train.inputs.mean())) < 1e-5  # standardised with train statistics


def test_cutout_square_centre_uniform_and_clipped():
    cut = Cutout(16, p=1.0)
    torch.manual_seed(0)
    clipped = 0
    for _ in range(300):
        mask = (cut(torch.ones(3, 32, 32)) == 0).all(dim=0)
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        assert int(mask.sum()) == (y1 - y0) * (x1 - x0)  # one rectangle
        for lo, hi in ((y0, y1), (x0, x1)):
            # 16 wide, or clipped at a border; the centre lies inside the image, so >= 8 remain.
            assert hi - lo == 16 or (8 <= hi - lo < 16 and (lo == 0 or hi == 32))
        clipped += (y1 - y0) * (x1 - x0) < 256
    # Centre uniform over 32 x 32: P(clipped) = 1 - (17/32)^2 ~ 0.72.
    assert 0.62 < clipped / 300 < 0.82
    image = torch.ones(3, 32, 32)
    assert torch.equal(Cutout(16, p=0.0)(image), image)
    torch.manual_seed(1)
    hit = sum(bool((Cutout(16, p=0.5)(image) == 0).any()) for _ in range(400))
    assert 150 < hit < 250
    with pytest.raises(ValueError, match="p in"):
        Cutout(16, p=2.0)


def test_epoch_order_is_a_pure_function_and_resumable():
    perm = epoch_permutation(100, seed=11, epoch=4)
    assert sorted(perm.tolist()) == list(range(100))
    assert torch.equal(perm, epoch_permutation(100, seed=11, epoch=4))
    assert not torch.equal(perm, epoch_permutation(100, seed=11, epoch=5))
    full = epoch_batches(100, 8, seed=11, epoch=4, start=0, stop=12)
    assert len(full) == 12 and all(len(b) == 8 for b in full)  # drop_last: 12 x 8 of 100
    assert epoch_batches(100, 8, seed=11, epoch=4, start=5, stop=12) == full[5:]
    assert [i for i, _ in full[0]] == perm[:8].tolist() and {e for b in full for _, e in b} == {4}


def test_seeds_never_depend_on_the_optimizer():
    a = TrainConfig("cifar", optimizer="sgd")
    b = TrainConfig("cifar", optimizer="vasso", theta=0.4, rho=0.1, lr=0.1, weight_decay=5e-4)
    for purpose in ("init", "batches", "augment", "train"):
        assert data_seed(a, purpose) == data_seed(b, purpose)
        assert data_seed(a, purpose) != data_seed(TrainConfig("cifar", seed=1), purpose)
        assert data_seed(a, purpose) != data_seed(TrainConfig("cifar", model="vgg11_bn"), purpose)
    assert derive_seed("x", 1) == derive_seed("x", 1) != derive_seed("x", 2)


def test_epoch_augmentation_is_a_pure_function_of_seed_and_epoch():
    aug = Augmentation(cutout_prob=1.0)
    draw = epoch_augmentation(500, aug, 32, 32, seed=3, epoch=2)
    again = epoch_augmentation(500, aug, 32, 32, seed=3, epoch=2)
    for name in ("offsets", "flip", "cutout_centre", "cutout"):
        assert torch.equal(getattr(draw, name), getattr(again, name)), name
    assert not torch.equal(draw.offsets, epoch_augmentation(500, aug, 32, 32, 3, epoch=3).offsets)
    assert not torch.equal(draw.offsets, epoch_augmentation(500, aug, 32, 32, 4, epoch=2).offsets)
    # Ranges, and the switches: p = 1 cuts all, no padding means no offset, no flip.
    assert draw.offsets.min() == 0 and draw.offsets.max() == 8 and draw.cutout.all()
    assert 0.4 < float(draw.flip.double().mean()) < 0.6
    plain = epoch_augmentation(500, Augmentation.none(), 32, 32, seed=3, epoch=2)
    assert not plain.offsets.any() and not plain.flip.any() and not plain.cutout.any()


def test_augmented_images_in_workers_match_main_process():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 32, 32, 3), dtype=torch.uint8, generator=g)
    dataset = AugmentedImages(images, torch.arange(12), mean=(0.5,) * 3, std=(0.25,) * 3,
                              augmentation=Augmentation(cutout_prob=0.5), seed=5)
    keys = [[(i, 2) for i in range(12)]]
    main = next(iter(torch.utils.data.DataLoader(dataset, batch_sampler=keys)))[0]
    workers = next(iter(torch.utils.data.DataLoader(dataset, batch_sampler=keys, num_workers=2)))[0]
    assert torch.equal(main, workers)
    assert not torch.equal(main, dataset[(0, 3)][0][None].expand_as(main))
    with pytest.raises(KeyError, match="index, epoch"):
        dataset[0]


def test_augmented_images_without_augmentation_are_normalised_batches():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)  # NCHW is accepted too
    dataset = AugmentedImages(images, [0, 1, 2, 3, 4], mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    expected = (images.float() / 255 - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / 0.2
    torch.testing.assert_close(dataset[2][0], expected[2])
    batch = torch.stack([x for x, _ in dataset.__getitems__([(i, 0) for i in range(5)])])
    torch.testing.assert_close(batch, expected)
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        AugmentedImages(images, [0] * 4, mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(ValueError, match="mean and std need 3 entries"):
        AugmentedImages(images, [0] * 5, mean=(0.5,), std=(0.2,))
