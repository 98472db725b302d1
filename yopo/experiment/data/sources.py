"""Datasets, the paper's augmentation (App. F) and fast in-memory loaders.

``load_data(name, root=None, ...)`` returns a :class:`Data` with ``train`` / ``test`` loaders that
yield ``(x, y)`` batches already on the training device, plus ``num_classes`` and ``input_shape``.

Datasets (``DATASETS``):

* ``digits`` - scikit-learn's 8x8 digits (1,797 images, offline); the default demo set.
* ``mnist1d`` - MNIST-1D generated locally by ``mnist1d.data.make_dataset`` (no download).
* ``cifar10`` / ``cifar100`` - ``root`` is either an ImageFolder tree (``train/`` and ``test/`` of
  class folders, e.g. ``../shared/data/cifar10-jpg``) or the torchvision CIFAR root (pickled
  batches, ``download=False``).
* ``tinyimagenet`` - ``train/<wnid>/[images/]*.JPEG`` and ``val/`` either in ImageFolder layout or
  the official ``val/images`` + ``val_annotations.txt``.
* ``imagenet`` - ImageFolder ``train/`` and ``val/``; streamed from disk with worker processes.
* ``imagefolder`` - any ImageFolder tree with ``train/`` and ``test/`` (or ``val/``).

Fast path (every set but ``imagenet``): images are decoded once into a uint8 tensor (N, C, H, W)
held in memory on the training device; the decoded tensor of an ImageFolder is cached under
``cache_dir`` (``$YOPO_CACHE`` or ``~/.cache/yopo``), written atomically, so a second run does not
decode again. Augmentation runs on whole batches of tensors: CIFAR = 4-pixel reflect padding +
random 32x32 crop + horizontal flip + per-channel normalization (statistics of the training
set); Tiny-ImageNet = random-resized crop to 64 + flip (batched ``grid_sample``).

Determinism: the order and augmentation of epoch ``e`` depend only on (seed, e), so a resumed run
sees the same batches as an uninterrupted one. With ``world > 1`` each rank takes every
``world``-th sample of the epoch's permutation (DistributedSampler style) and ``batch_size`` is the
per-rank batch.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .io import atomic_path
from .validate import check_choice, check_int

DATASETS = ("digits", "mnist1d", "cifar10", "cifar100", "tinyimagenet", "imagenet", "imagefolder")
AUGMENTS = ("auto", "none", "cifar", "rrc", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")


# --------------------------------------------------------------------------------------------
# batched tensor augmentation


def _mix(*xs: int) -> int:
    """A 63-bit seed from several integers (stable across runs and platforms)."""
    h = hashlib.sha256(json.dumps(list(xs)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


@dataclass
class Normalize:
    """uint8 (or float) batch -> float32, per-channel (x/255 - mean) / std. ``scale=None``: no /255."""

    mean: torch.Tensor
    std: torch.Tensor
    scale: float | None = 255.0

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        # (x/s - mean)/std = x * 1/(s*std) + (-mean/std): one fused pass
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mul = (1.0 / ((self.scale or 1.0) * self.std)).to(x.device).view(shape)
        add = (-self.mean / self.std).to(x.device).view(shape)
        return torch.addcmul(add, x.float(), mul)


@dataclass
class CropFlip:
    """Random crop with reflect padding + horizontal flip, on a whole (N, C, H, W) batch."""

    norm: Normalize
    pad: int = 4
    flip: bool = True

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        # one gather per batch: the crop offsets and the flip are folded into a flat index into
        # the reflect-padded images (normalization is per-channel affine, so it commutes; applied last)
        n, c, h, w = x.shape
        dev, p = x.device, self.pad
        xf = x.float()
        if p:
            xf = F.pad(xf, (p,) * 4, mode="reflect")
        oy = torch.randint(0, 2 * p + 1, (n,), generator=g, device=g.device).to(dev)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=g, device=g.device).to(dev)
        cols = torch.arange(w, device=dev).expand(n, w)
        if self.flip:
            f = (torch.rand(n, generator=g, device=g.device) < 0.5).to(dev)
            cols = torch.where(f[:, None], w - 1 - cols, cols)
        rows = oy[:, None] + torch.arange(h, device=dev)
        idx = (rows[:, :, None] * (w + 2 * p) + (ox[:, None] + cols)[:, None, :]).view(n, 1, h * w)
        out = xf.view(n, c, -1).gather(2, idx.expand(n, c, h * w)).view(n, c, h, w)
        return self.norm(out)


@dataclass
class RandomResizedCropFlip:
    """Random-resized crop (scale, log-uniform aspect ratio) to ``size`` + flip, batched with
    ``affine_grid``/``grid_sample`` (bilinear)."""

    norm: Normalize
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        r = lambda: torch.rand(n, generator=g, device=g.device).to(dev)  # noqa: E731
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * r()
        logr = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * r()
        ar = torch.exp(logr)
        cw = torch.sqrt(area * ar).clamp(max=1.0)  # crop width / image width
        ch = torch.sqrt(area / ar).clamp(max=1.0)
        cx = (1 - cw) * (2 * r() - 1)  # crop centre in [-1, 1] coordinates, crop stays inside
        cy = (1 - ch) * (2 * r() - 1)
        sx = cw * torch.where(r() < 0.5, -1.0, 1.0) if self.flip else cw
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, ch, cy
        grid = F.affine_grid(theta, (n, x.shape[1], self.size, self.size), align_corners=False)
        return F.grid_sample(self.norm(x), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# --------------------------------------------------------------------------------------------
# loaders


class TensorLoader:
    """Batches of an in-memory tensor set, on ``device``, with a per-epoch seeded order and
    batched augmentation. ``set_epoch(e)`` selects the epoch (as DistributedSampler does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, transform: Callable,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world: int = 1, device="cpu"):
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.transform = batch_size, shuffle, transform
        self.seed, self.drop_last, self.rank, self.world = seed, drop_last, rank, world
        self.epoch = 0
        # drop the last partial batch only when there is more than one batch (BatchNorm needs > 1)
        if drop_last and self._per_rank() < batch_size:
            self.drop_last = False

    def _per_rank(self) -> int:
        n = len(self.y)
        return n // self.world if self.shuffle else math.ceil((n - self.rank) / self.world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        m = self._per_rank()
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def _generator(self, tag: int) -> torch.Generator:
        dev = self.device if self.device.type == "cuda" else torch.device("cpu")
        return torch.Generator(device=dev).manual_seed(_mix(self.seed, self.epoch, self.rank, tag))

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
            order = order[self.rank::self.world][: n // self.world]
        else:
            order = torch.arange(self.rank, n, self.world)
        order = order.to(self.device)
        g = self._generator(1)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.transform(self.x[idx], g), self.y[idx]


class StreamLoader:
    """A ``torch.utils.data.DataLoader`` over a map-style dataset (decoded per image, in worker
    processes) with the same per-epoch seeded, rank-sharded order as :class:`TensorLoader`."""

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world: int = 1, device="cpu", workers: int = 2):
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world, self.workers = drop_last, rank, world, workers
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def _indices(self) -> list[int]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
            return order[self.rank::self.world][: n // self.world].tolist()
        return list(range(self.rank, n, self.world))

    def __len__(self) -> int:
        m = len(self._indices())
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __iter__(self):
        from torch.utils.data import DataLoader
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, self.rank, 2))  # worker seeds
        dl = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self._indices(), drop_last=self.drop_last,
                        num_workers=self.workers, generator=g, pin_memory=self.device.type == "cuda",
                        persistent_workers=False)
        for x, y in dl:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass
class Data:
    """What :func:`load_data` returns. ``input_shape`` is per sample, e.g. (3, 32, 32) or (40,)."""

    name: str
    train: TensorLoader | StreamLoader
    test: TensorLoader | StreamLoader
    num_classes: int
    input_shape: tuple[int, ...]
    classes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def example_batch(self, n: int | None = None):
        """One deterministic, un-augmented (normalized) batch of ``n`` training samples (default: a
        batch), e.g. for data-dependent scoring methods."""
        n = n or self.train.batch_size
        tr = self.train
        if isinstance(tr, TensorLoader):
            k = min(n, len(tr.y))
            idx = torch.randperm(len(tr.y), generator=torch.Generator().manual_seed(_mix(tr.seed, -1)))[:k]
            idx = idx.to(tr.device)
            return self.info["eval_transform"](tr.x[idx], None), tr.y[idx]
        ds = tr.dataset  # streamed sets: the first n training images, with the training transform
        xs, ys = zip(*(ds[i] for i in range(min(n, len(ds)))))
        return torch.stack(xs).to(tr.device), torch.tensor(ys).to(tr.device)


# --------------------------------------------------------------------------------------------
# sources


def default_cache_dir() -> Path:
    return Path(os.environ.get("YOPO_CACHE") or Path.home() / ".cache" / "yopo")


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


def _decode(items: list[tuple[Path, int]], size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    x, first = None, None
    for i, (path, _) in enumerate(items):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im)
        if first is None:
            first = a.shape
            x = np.empty((len(items), *a.shape), dtype=np.uint8)
        elif a.shape != first:
            raise ValueError(f"{path}: image shape {a.shape} differs from {first}; "
                             "the in-memory path needs equal sizes (pass image_size=... to resize)")
        x[i] = a
    return (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
            torch.tensor([c for _, c in items], dtype=torch.long))


def decode_cached(items: list[tuple[Path, int]], cache_dir: Path | None, size: int | None = None,
                  tag: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``items`` into (uint8 N x 3 x H x W, labels), cached in ``cache_dir`` keyed by the file
    list and the mtimes of their folders (so adding, removing or renaming files decodes again; an
    image rewritten in place under the same name is not noticed). Written atomically."""
    if cache_dir is None:
        return _decode(items, size)
    h = hashlib.sha256(str(size).encode())
    dirs = sorted({p.parent for p, _ in items})
    for d in dirs:  # folder mtimes change when files are added, removed or renamed
        h.update(f"{d.resolve()}|{d.stat().st_mtime_ns}\n".encode())
    for p, c in items:
        h.update(f"{p.parent.name}/{p.name}|{c}\n".encode())
    path = Path(cache_dir) / f"{tag}{h.hexdigest()[:20]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return blob["x"], blob["y"]
        except Exception:  # a corrupt cache is rebuilt
            pass
    x, y = _decode(items, size)
    with atomic_path(path) as tmp:
        torch.save({"x": x, "y": y}, tmp)
    return x, y


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


def _stats(x: torch.Tensor, uint8: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std of a training tensor (on [0, 1] for uint8 images)."""
    xf = x.float() / (255.0 if uint8 else 1.0)
    dims = [0] + list(range(2, x.dim()))
    if x.dim() == 2:  # (N, L) signals: one channel
        return xf.mean().view(1), xf.std().clamp_min(1e-8).view(1)
    return xf.mean(dims), xf.std(dims).clamp_min(1e-8)


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


def load_data(name: str = "digits", root=None, *, batch_size: int = 128, eval_batch_size: int | None = None,
              seed: int = 0, subset: int | None = None, subset_seed: int = 0, test_subset: int | None = None,
              augment: str = "auto", device="cpu", rank: int = 0, world: int = 1, cache_dir=None,
              workers: int = 2, image_size: int | None = None) -> Data:
    """Load dataset ``name`` (see module doc) into loaders on ``device``.

    ``batch_size`` is per rank. ``subset``: a class-balanced subset of that many training images
    (chosen by ``subset_seed``, not by ``seed``); ``test_subset`` likewise for the test set.
    ``augment``: ``auto`` (the paper's choice for the dataset), ``none``, ``cifar`` (pad-4 reflect
    crop + flip), ``rrc`` (random-resized crop to the image size + flip) or ``imagenet`` (stream).
    ``cache_dir``: where decoded ImageFolder tensors are cached (default ``$YOPO_CACHE`` or
    ``~/.cache/yopo``; ``False`` disables the cache).
    """
    check_choice("dataset", name, DATASETS)
    check_choice("augment", augment, AUGMENTS)
    check_int("batch_size", batch_size, 1)
    device = torch.device(device)
    eval_batch_size = eval_batch_size or max(batch_size, 256)
    if name == "imagenet" or augment == "imagenet":
        return _imagenet_stream(_check_root(root, name), batch_size, seed, rank, world, device, workers, image_size)
    if cache_dir is None:
        cache_dir = default_cache_dir() / "decoded"
    elif cache_dir is False:
        cache_dir = None
    images = True
    if name == "digits":
        xtr, ytr, xte, yte, classes = _digits()
        images = False
    elif name == "mnist1d":
        xtr, ytr, xte, yte, classes = _mnist1d()
        images = False
    else:
        r = _check_root(root, name)
        if name in ("cifar10", "cifar100") and not (r / "train").is_dir():
            xtr, ytr, xte, yte, classes = _torchvision_cifar(r, name)
        else:
            xtr, ytr, xte, yte, classes = _imagefolder_tensors(r, name, cache_dir, image_size)
    full_train = len(ytr)
    if subset is not None and subset < len(ytr):
        keep = balanced_subset(ytr, subset, subset_seed)
        xtr, ytr = xtr[keep], ytr[keep]
    if test_subset is not None and test_subset < len(yte):
        keep = balanced_subset(yte, test_subset, subset_seed)
        xte, yte = xte[keep], yte[keep]
    mean, std = _stats(xtr, images)
    norm = Normalize(mean, std, 255.0 if images else None)
    if augment == "auto":
        augment = {"cifar10": "cifar", "cifar100": "cifar", "tinyimagenet": "rrc"}.get(name, "none")
        if name == "imagefolder":
            augment = "cifar" if xtr.shape[-1] <= 32 else "rrc"
    if augment != "none" and xtr.dim() != 4:
        raise ValueError(f"augment={augment!r} needs images; dataset {name!r} has inputs of shape {tuple(xtr.shape[1:])}")
    train_tf = {"none": norm, "cifar": CropFlip(norm, 4), "rrc": RandomResizedCropFlip(norm, xtr.shape[-1])}[augment]
    common = dict(seed=seed, rank=rank, world=world, device=device)
    train = TensorLoader(xtr, ytr, batch_size, shuffle=True, transform=train_tf, drop_last=True, **common)
    test = TensorLoader(xte, yte, eval_batch_size, shuffle=False, transform=norm, **common)
    num_classes = max(len(classes), int(ytr.max()) + 1)
    info = {"eval_transform": norm, "augment": augment, "train_size": len(ytr), "test_size": len(yte),
            "full_train_size": full_train, "mean": mean.tolist(), "std": std.tolist()}
    return Data(name, train, test, num_classes, tuple(xtr.shape[1:]), classes, info)
