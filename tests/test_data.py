"""Datasets, the batched augmentation, the decode cache, subsets and loader determinism."""
import pytest
import torch
from PIL import Image

import yopo.experiment.data.cache as D
from yopo.experiment.data import CropFlip, Normalize, RandomResizedCropFlip, TensorLoader, balanced_subset, load_data

torch.set_num_threads(1)


def _folder(root, splits=("train", "test"), n=6, size=8):
    g = torch.Generator().manual_seed(0)
    for split in splits:
        for c in ("cat", "dog", "emu"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=g).numpy()
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def test_digits_and_mnist1d():
    d = load_data("digits", batch_size=32)
    assert d.num_classes == 10 and d.input_shape == (1, 8, 8)
    assert d.info["train_size"] + d.info["test_size"] == 1797
    x, y = next(iter(d.train))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    m = load_data("mnist1d", batch_size=50)
    assert m.input_shape == (40,) and m.num_classes == 10 and m.info["train_size"] == 4000


def test_imagefolder_cache_and_subset(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    d = load_data("imagefolder", root, batch_size=4, cache_dir=cache)
    assert d.num_classes == 3 and d.input_shape == (3, 8, 8) and d.classes == ["cat", "dog", "emu"]
    assert d.train.x.dtype == torch.uint8 and len(list(cache.glob("*.pt"))) == 2
    monkeypatch.setattr(D, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    d2 = load_data("imagefolder", root, batch_size=4, cache_dir=cache, subset=6)
    assert torch.equal(torch.bincount(d2.train.y), torch.tensor([2, 2, 2]))
    assert not list(cache.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_cifar_layout_and_errors(tmp_path):
    root = _folder(tmp_path / "c10", size=32, n=2)
    d = load_data("cifar10", root, batch_size=2, cache_dir=False)
    assert d.info["augment"] == "cifar" and d.input_shape == (3, 32, 32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data("cifar10", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="cifar100 not found"):
        load_data("cifar100", tmp_path)  # neither ImageFolder nor torchvision layout; never downloads
    with pytest.raises(FileNotFoundError, match="needs a data root"):
        load_data("tinyimagenet")
    with pytest.raises(ValueError, match="dataset='svhn' is not allowed"):
        load_data("svhn")


def test_balanced_subset_deterministic():
    y = torch.arange(10).repeat_interleave(100)
    a, b = balanced_subset(y, 95, seed=0), balanced_subset(y, 95, seed=0)
    assert torch.equal(a, b) and len(a) == 95
    counts = torch.bincount(y[a])
    assert counts.max() - counts.min() <= 1
    assert not torch.equal(a, balanced_subset(y, 95, seed=1))


def test_crop_flip_batched():
    norm = Normalize(torch.zeros(3), torch.ones(3))
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(CropFlip(norm, pad=0, flip=False)(x, g), x.float() / 255)
    out = CropFlip(norm, pad=4)(x, g)
    assert out.shape == (64, 3, 32, 32)
    # each output is a 32x32 window of the reflect-padded (possibly flipped) input
    padded = torch.nn.functional.pad(x.float() / 255, (4,) * 4, mode="reflect")
    for i in range(4):
        hits = [(oy, ox) for oy in range(9) for ox in range(9) for img in (padded[i], padded[i].flip(2))
                if torch.allclose(img[:, oy:oy + 32, ox:ox + 32], out[i])]
        assert hits
    rrc = RandomResizedCropFlip(norm, 16)(x, g)
    assert rrc.shape == (64, 3, 16, 16) and torch.isfinite(rrc).all()


def test_loader_epochs_and_ranks():
    x = torch.arange(20).view(20, 1).float()
    y = torch.zeros(20, dtype=torch.long)
    ident = lambda b, g: b  # noqa: E731
    mk = lambda **kw: TensorLoader(x, y, 4, shuffle=True, transform=ident, seed=1, **kw)  # noqa: E731
    a, b = mk(), mk()
    first = torch.cat([xb for xb, _ in a])
    assert torch.equal(first, torch.cat([xb for xb, _ in b]))  # same seed, same epoch
    b.set_epoch(1)
    assert not torch.equal(first, torch.cat([xb for xb, _ in b]))
    r0, r1 = mk(rank=0, world=2), mk(rank=1, world=2)
    s0, s1 = torch.cat([xb for xb, _ in r0]), torch.cat([xb for xb, _ in r1])
    assert len(s0) == len(s1) == 10  # 20 samples, 10 per rank
    assert not set(s0.flatten().tolist()) & set(s1.flatten().tolist())
