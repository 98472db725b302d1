"""The decode cache: ImageFolder images decoded once into a uint8 tensor, cached on disk
(``$YOPO_CACHE`` or ``~/.cache/yopo``), written atomically."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ...core.io import atomic_path


def default_cache_dir() -> Path:
    return Path(os.environ.get("YOPO_CACHE") or Path.home() / ".cache" / "yopo")



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
        except (OSError, EOFError, RuntimeError, ValueError, TypeError, LookupError, pickle.UnpicklingError):
            # a corrupt or truncated cache file (what torch.load raises for one) is rebuilt
            pass
    x, y = _decode(items, size)
    with atomic_path(path) as tmp:
        torch.save({"x": x, "y": y}, tmp)
    return x, y
