"""The datasets: scikit-learn digits, MNIST-1D, CIFAR-10/100 (torchvision or ImageFolder layout),
ImageFolder trees, Tiny-ImageNet and streamed ImageNet; class-balanced subsets; the input shapes
and class counts of the known datasets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ...core.validate import check_int
from .augment import IMAGENET_MEAN, IMAGENET_STD, _mix
from .cache import decode_cached
from .loaders import Data, StreamLoader

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")

KNOWN_NUM_CLASSES = {"digits": 10, "mnist1d": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200,
                     "imagenet": 1000}
INPUT_SHAPES = {"digits": (1, 8, 8), "mnist1d": (40,), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
                "tinyimagenet": (3, 64, 64), "imagenet": (3, 224, 224)}


def _check_root(root, name: str) -> Path:
    if root is None:
        raise FileNotFoundError(f"dataset {name!r} needs a data root (--data-root PATH)")
    p = Path(root).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"data root {str(p)!r} for dataset {name!r} does not exist or is not a folder")
    return p


def _list_imagefolder(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{str(split_dir)!r} has no class folders (ImageFolder layout: {split_dir}/<class>/*.jpg)")
    items = []
    for ci, c in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(split_dir / c)):
            for f in sorted(files):
                if f.lower().endswith(IMG_EXTENSIONS):
                    items.append((Path(dirpath) / f, ci))
    if not items:
        raise FileNotFoundError(f"no images under {str(split_dir)!r}")
    return classes, items


def _tiny_val(root: Path, classes: list[str]) -> list[tuple[Path, int]] | None:
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        return None
    idx = {c: i for i, c in enumerate(classes)}
    items = []
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            items.append((root / "val" / "images" / parts[0], idx[parts[1]]))
    return items


def balanced_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a class-balanced subset of ``n`` samples (``n // classes`` per class, the
    remainder to the first classes), drawn with ``seed``. The same (labels, n, seed) gives the same
    subset, independent of the training seed."""
    classes = torch.unique(y)
    check_int("subset", n, 1, len(y))
    base, extra = divmod(n, len(classes))
    g = torch.Generator().manual_seed(_mix(seed, n, "subset"))
    picks = []
    for i, c in enumerate(classes.tolist()):
        idx = (y == c).nonzero().flatten()
        k = base + (1 if i < extra else 0)
        if k > len(idx):
            raise ValueError(f"subset={n} needs {k} samples of class {c} but there are only {len(idx)}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.cat(picks).sort().values


def _imagefolder_tensors(root: Path, name: str, cache_dir, image_size=None):
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} has no train/ folder (ImageFolder layout train/ test/)")
    classes, train_items = _list_imagefolder(train_dir)
    test_items = None
    if name == "tinyimagenet":
        test_items = _tiny_val(root, classes)
    if test_items is None:
        for split in ("test", "val"):
            if (root / split).is_dir():
                test_classes, test_items = _list_imagefolder(root / split)
                if test_classes != classes:
                    raise ValueError(f"{root}/{split} has classes differing from {root}/train")
                break
    if test_items is None:
        raise FileNotFoundError(f"data root {str(root)!r} has no test/ or val/ folder")
    tag = f"{name}-"
    xtr, ytr = decode_cached(train_items, cache_dir, image_size, tag + "train-")
    xte, yte = decode_cached(test_items, cache_dir, image_size, tag + "test-")
    return xtr, ytr, xte, yte, classes


def _torchvision_cifar(root: Path, name: str):
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        tr, te = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    except RuntimeError as e:
        raise FileNotFoundError(f"{name} not found under {str(root)!r} (torchvision layout, e.g. "
                                f"cifar-10-batches-py/, or ImageFolder train/ test/); nothing is downloaded") from e
    to_t = lambda a: torch.from_numpy(np.asarray(a)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return (to_t(tr.data), torch.tensor(tr.targets), to_t(te.data), torch.tensor(te.targets), list(tr.classes))


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # fixed 80/20 split
    cut = int(0.8 * len(y))
    tr, te = perm[:cut].sort().values, perm[cut:].sort().values
    return x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)]


def _mnist1d(seed: int = 42):
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)  # generated locally from the package's templates
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    i = lambda a: torch.tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    return f(d["x"]), i(d["y"]), f(d["x_test"]), i(d["y_test"]), [str(k) for k in range(10)]


def _imagenet_stream(root: Path, batch_size, seed, rank, world, device, workers, image_size):
    import torchvision
    from torchvision import transforms as T
    size = image_size or 224
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    eval_tf = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor(), norm])
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} has no train/ folder (ImageNet: train/ val/)")
    val = root / "val" if (root / "val").is_dir() else root / "test"
    if not val.is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} has no val/ or test/ folder")
    tr = torchvision.datasets.ImageFolder(str(root / "train"), train_tf)
    te = torchvision.datasets.ImageFolder(str(val), eval_tf)
    common = dict(seed=seed, rank=rank, world=world, device=device, workers=workers)
    return Data("imagenet", StreamLoader(tr, batch_size, shuffle=True, drop_last=True, **common),
                StreamLoader(te, batch_size, shuffle=False, **common), len(tr.classes), (3, size, size),
                list(tr.classes), {"stream": True})
