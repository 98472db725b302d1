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

Modules: ``augment`` (batched tensor augmentation and normalization), ``loaders`` (in-memory and
streamed loaders, :class:`Data`), ``sources`` (the datasets: digits, MNIST-1D, CIFAR, ImageFolder,
Tiny-ImageNet, ImageNet; balanced subsets; known shapes and class counts), ``cache`` (the decode
cache). This package holds :func:`load_data` and the helpers that load a dataset from a run's
settings dict (:func:`load_dataset`, :func:`dataset_input_shape`, :func:`num_classes_of`).
"""
from __future__ import annotations

import json

import torch

from ...core.validate import check_choice, check_int
from .augment import IMAGENET_MEAN, IMAGENET_STD, CropFlip, Normalize, RandomResizedCropFlip, _stats
from .cache import decode_cached, default_cache_dir
from .loaders import Data, StreamLoader, TensorLoader
from .sources import (IMG_EXTENSIONS, INPUT_SHAPES, KNOWN_NUM_CLASSES, _check_root, _digits, _imagefolder_tensors,
                      _imagenet_stream, _mnist1d, _torchvision_cifar, balanced_subset)

DATASETS = ("digits", "mnist1d", "cifar10", "cifar100", "tinyimagenet", "imagenet", "imagefolder")
AUGMENTS = ("auto", "none", "cifar", "rrc", "imagenet")

__all__ = ["AUGMENTS", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "IMG_EXTENSIONS", "INPUT_SHAPES",
           "KNOWN_NUM_CLASSES", "CropFlip", "Data", "Normalize", "RandomResizedCropFlip", "StreamLoader",
           "TensorLoader", "balanced_subset", "dataset_input_shape", "decode_cached", "default_cache_dir",
           "load_data", "load_dataset", "num_classes_of"]


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


# --------------------------------------------------------------------------------------------
# a dataset from a run's settings dict (the sweep's ``train`` table)


_DATA_CACHE: dict = {}


def load_dataset(dataset: str, train: dict, *, seed: int = 0):
    """:func:`load_data` with the run's settings (cached per process)."""
    key = json.dumps([dataset, {k: train.get(k) for k in ("data_root", "subset", "subset_seed", "test_subset",
                                                          "image_size", "batch_size")}, seed],
                     sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_data(dataset, train.get("data_root"), batch_size=int(train.get("batch_size") or 128),
                                     seed=seed, subset=train.get("subset"), subset_seed=int(train.get("subset_seed") or 0),
                                     test_subset=train.get("test_subset"), image_size=train.get("image_size"),
                                     device="cpu")
    return _DATA_CACHE[key]


def dataset_input_shape(dataset: str, train: dict) -> tuple[int, ...]:
    """One example's shape (no batch dim): known datasets from ``INPUT_SHAPES``, others loaded."""
    shape = INPUT_SHAPES.get(dataset)
    return tuple(shape) if shape is not None else tuple(load_dataset(dataset, train).input_shape)


def num_classes_of(dataset: str, train: dict) -> int:
    if train.get("num_classes"):
        return int(train["num_classes"])
    if dataset in KNOWN_NUM_CLASSES:
        return KNOWN_NUM_CLASSES[dataset]
    return int(load_dataset(dataset, train).num_classes)
