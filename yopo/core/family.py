"""The supermask family artifact: the once-only saliency of a model, saved with an architecture
fingerprint, from which a mask at any sparsity / mode is derived without rescoring.

File format (safetensors): one float32 tensor per prunable layer, keyed by parameter name, plus
metadata ``{"yopo_format": "family/1", "meta": <json>}`` where meta holds the method, its settings,
the init seed, the model name and the fingerprint (layer names and shapes, in order).
A single mask is exported bit-packed (``mask/1``): one uint8 tensor of ``np.packbits`` per layer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .calibration import Calibration, mort
from .io import atomic_path
from .layers import prunable_layers

FAMILY_FORMAT = "family/1"
MASK_FORMAT = "mask/1"


def fingerprint(layers) -> dict:
    """Layer names and shapes in order, and a short hash of them."""
    spec = [[l.name, list(l.shape)] for l in layers]
    digest = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    return {"layers": spec, "hash": digest}


def check_fingerprint(expected: dict, model, exclude=(), include=None) -> None:
    """Raise ``ValueError`` naming the first layer where ``model`` differs from the artifact."""
    have = {l.name: list(l.shape) for l in prunable_layers(model, exclude=exclude, include=include)}
    for name, shape in expected["layers"]:
        if name not in have:
            raise ValueError(f"artifact layer {name!r} (shape {tuple(shape)}) is not a prunable layer of this model")
        if have[name] != shape:
            raise ValueError(f"layer {name!r}: artifact shape {tuple(shape)} but model shape {tuple(have[name])}")


@dataclass
class Family:
    """Once-only saliency + provenance. ``scores[name]`` has the weight's shape (float32, CPU)."""

    scores: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_scores(cls, scores, layers, *, method: str, settings: dict, seed: int, model_name: str | None = None):
        meta = {"method": method, "settings": settings, "seed": seed, "model": model_name,
                "fingerprint": fingerprint(layers)}
        return cls({n: s.detach().float().cpu().contiguous() for n, s in scores.items()}, meta)

    def calibrate(self, sparsity, mode: str = "global", robust: str = "mad", min_keep: int = 1,
                  col_keep: int = 0, solver: str = "exact") -> Calibration:
        return mort(self.scores, sparsity, mode=mode, robust=robust, min_keep=min_keep,
                    col_keep=col_keep, solver=solver)

    def masks(self, sparsity, **kw) -> dict[str, torch.Tensor]:
        return self.calibrate(sparsity, **kw).masks

    def check(self, model, exclude=(), include=None) -> None:
        check_fingerprint(self.meta["fingerprint"], model, exclude=exclude, include=include)

    def save(self, path) -> None:
        meta = {"yopo_format": FAMILY_FORMAT, "meta": json.dumps(self.meta, sort_keys=True)}
        with atomic_path(path) as tmp:
            save_file(self.scores, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path) -> "Family":
        meta = _read_meta(path, FAMILY_FORMAT)
        scores = load_file(str(path))
        order = [name for name, _ in meta["fingerprint"]["layers"]]
        return cls({n: scores[n] for n in order}, meta)


def _read_meta(path, expected_format: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: No such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except (SafetensorError, OSError) as e:  # a file of another format (or unreadable)
        raise ValueError(f"{path} is not a safetensors file ({type(e).__name__}: {e})".split("\n")[0]) from None
    if md.get("yopo_format") != expected_format:
        raise ValueError(f"{path}: yopo_format={md.get('yopo_format')!r}, expected {expected_format!r}")
    return json.loads(md["meta"])


def save_mask(path, masks: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Write masks bit-packed (1 bit per weight)."""
    packed, shapes = {}, {}
    for n, m in masks.items():
        packed[n] = torch.from_numpy(np.packbits(m.detach().cpu().numpy().astype(bool).ravel()))
        shapes[n] = list(m.shape)
    info = dict(meta or {}, shapes=shapes)
    with atomic_path(path) as tmp:
        save_file(packed, str(tmp), metadata={"yopo_format": MASK_FORMAT, "meta": json.dumps(info, sort_keys=True)})


def load_mask(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a bit-packed mask file: ({name: bool tensor}, meta)."""
    meta = _read_meta(path, MASK_FORMAT)
    packed = load_file(str(path))
    masks = {}
    for n, shape in meta["shapes"].items():
        numel = int(np.prod(shape))
        bits = np.unpackbits(packed[n].numpy())[:numel].astype(bool)
        masks[n] = torch.from_numpy(bits).reshape(shape)
    return masks, meta
