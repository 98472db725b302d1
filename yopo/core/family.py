"""The supermask family artifact: the once-only saliency of a model, saved with an architecture
fingerprint, from which a mask at any sparsity / mode is derived without rescoring.

File format (safetensors): one float32 tensor per prunable layer, keyed by parameter name, plus
metadata ``{"yopo_format": "family/1", "meta": <json>}`` where meta holds the method, its settings
(``settings``: the method's options), the init seed, the model name, the fingerprint (layer names
and shapes, in order) and ``calibration``: the :class:`CalibrationSettings` the family's mask was
printed with (the base that :meth:`Family.calibrate` re-thresholds with unless told otherwise).
A family made for an ``allocation="from:<method>"`` calibration also holds that method's scores
(tensors ``budget:<name>``, meta ``budget_method``), so re-thresholding needs no rescoring.
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

from .calibration import Calibration, CalibrationSettings, mort, resolve_settings
from .config import from_mapping
from .io import atomic_path
from .layers import prunable_layers

FAMILY_FORMAT = "family/1"
MASK_FORMAT = "mask/1"
BUDGET_PREFIX = "budget:"  # tensor-name prefix of the budget method's scores


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
    """Once-only saliency + provenance. ``scores[name]`` has the weight's shape (float32, CPU);
    ``budget_scores``: the scores of ``meta["budget_method"]`` (for ``allocation="from:<method>"``)."""

    scores: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)
    budget_scores: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_scores(cls, scores, layers, *, method: str, settings: dict, seed: int, model_name: str | None = None,
                    calibration: CalibrationSettings | None = None, budget_method: str | None = None,
                    budget_scores: dict | None = None):
        meta = {"method": method, "settings": settings, "seed": seed, "model": model_name,
                "fingerprint": fingerprint(layers)}
        if calibration is not None:
            meta["calibration"] = calibration.to_dict()
        if (budget_method is None) != (budget_scores is None):
            raise ValueError("pass budget_method and budget_scores together")
        if budget_method is not None:
            meta["budget_method"] = budget_method
            budget_scores = {n: s.detach().float().cpu().contiguous() for n, s in budget_scores.items()}
        return cls({n: s.detach().float().cpu().contiguous() for n, s in scores.items()}, meta, budget_scores)

    @property
    def calibration_settings(self) -> CalibrationSettings:
        """The settings the family's mask was printed with (defaults for a family that has none)."""
        stored = self.meta.get("calibration")
        return from_mapping(CalibrationSettings, stored, what="family calibration settings") if stored \
            else CalibrationSettings()

    def calibrate(self, sparsity, settings: CalibrationSettings | None = None, **overrides) -> Calibration:
        """The mask at ``sparsity`` by re-thresholding the stored scores (no rescoring). Settings:
        ``settings`` (default: :attr:`calibration_settings`, those stored with the family) with
        ``overrides`` (fields of :class:`CalibrationSettings`; ``mode=`` is the paper's name of the
        allocation)."""
        s = resolve_settings(self.calibration_settings if settings is None else settings, **overrides)
        return mort(self.scores, sparsity, s, budget_scores=self.budget_for(s))

    def budget_for(self, s: CalibrationSettings):
        """The scores that give the layer budgets of ``s`` (``allocation="from:<method>"``), or None."""
        m = s.budget_method
        if m is None:
            return None
        if self.budget_scores is not None and self.meta.get("budget_method") == m:
            return self.budget_scores
        if self.meta.get("method") == m:
            return self.scores
        held = self.meta.get("method") + (f" and {self.meta['budget_method']}" if self.budget_scores else "")
        raise ValueError(f"allocation={s.allocation!r} needs the scores of {m!r}; this family holds those of "
                         f"{held}: create it with `yopo prune --allocation {s.allocation}`")

    def masks(self, sparsity, settings: CalibrationSettings | None = None, **kw) -> dict[str, torch.Tensor]:
        return self.calibrate(sparsity, settings, **kw).masks

    def check(self, model, exclude=(), include=None) -> None:
        check_fingerprint(self.meta["fingerprint"], model, exclude=exclude, include=include)

    def save(self, path) -> None:
        meta = {"yopo_format": FAMILY_FORMAT, "meta": json.dumps(self.meta, sort_keys=True)}
        tensors = dict(self.scores)
        if self.budget_scores is not None:
            tensors.update({BUDGET_PREFIX + n: t for n, t in self.budget_scores.items()})
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path) -> "Family":
        meta = _upgrade_meta(_read_meta(path, FAMILY_FORMAT))
        scores = load_file(str(path))
        order = [name for name, _ in meta["fingerprint"]["layers"]]
        budget = {n: scores[BUDGET_PREFIX + n] for n in order} if meta.get("budget_method") else None
        return cls({n: scores[n] for n in order}, meta, budget)


def _upgrade_meta(meta: dict) -> dict:
    """Families written before the YOPO option renames (init/solver/threads -> nmf_*) read with the
    new names."""
    if meta.get("method") == "yopo" and isinstance(meta.get("settings"), dict):
        from ..methods.yopo.saliency import RENAMED
        meta["settings"] = {RENAMED.get(k, k): v for k, v in meta["settings"].items()}
    return meta


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
