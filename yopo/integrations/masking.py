"""What the trainer callbacks share: where their masks come from and how they are kept.

:func:`masks_from` turns a mask source into ``{parameter name: bool tensor}``: a dict, a
:class:`yopo.Family` or a family / bit-packed mask file (a family needs ``sparsity`` and is
calibrated with ``mode``). :func:`masks_for_model` scores a model once (any data-free method) and
calibrates it: call it on the model *before* training (at initialization, or on the pretrained
weights), not on a checkpoint being resumed, whose pruned weights are already zero.
:class:`MaskHolder` is what both callbacks hold: the masks, how the kept weights start
(``kept_scale``) and ``from_model``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.calibration import calibrate
from ..core.family import Family, load_mask
from ..core.masks import KEPT_SCALES, apply_masks
from ..core.registry import get_method, score
from ..core.validate import check_choice


def masks_from(source, *, sparsity=None, mode: str = "global") -> dict[str, torch.Tensor]:
    """{name: bool mask} from a dict, a Family, or a family/mask file path."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return {n: m.bool() for n, m in load_mask(path)[0].items()}
        except ValueError as e:
            if "yopo_format" not in str(e):
                raise
            source = Family.load(path)
    if isinstance(source, Family):
        if sparsity is None:
            raise ValueError("a family of scores needs sparsity= to become masks")
        return source.masks(sparsity, mode=mode)
    if isinstance(source, dict) and source and all(isinstance(m, torch.Tensor) for m in source.values()):
        if sparsity is not None:
            raise ValueError(f"sparsity={sparsity} cannot act on ready masks; drop it")
        return {n: m.bool() for n, m in source.items()}
    raise TypeError(f"masks must be a non-empty dict {{name: tensor}}, a Family or a file path; got "
                    f"{type(source).__name__}")


def masks_for_model(model, sparsity, *, method: str = "yopo", mode: str = "global", exclude=(), seed: int = 0,
                    **method_opts) -> dict[str, torch.Tensor]:
    """Score ``model`` once with a data-free ``method`` and calibrate at ``sparsity``."""
    if not get_method(method).data_free:
        raise ValueError(f"method {method!r} needs data; score it yourself and pass the masks")
    return calibrate(score(model, method, seed=seed, exclude=exclude, **method_opts), sparsity, mode=mode)


class MaskHolder:
    """The part the HF and Lightning callbacks share. ``kept_scale`` (:data:`KEPT_SCALES`) is passed
    to :func:`yopo.apply_masks` (``layer_rms``: each layer's kept weights start at the RMS of its
    dense init; ``auto`` tests the model for normalization layers, with ``input_shape`` when the
    first layer does not tell it)."""

    def _hold(self, masks, *, sparsity, mode: str, kept_scale: str, input_shape) -> None:
        self.masks = masks_from(masks, sparsity=sparsity, mode=mode)
        check_choice("kept_scale", kept_scale, KEPT_SCALES)
        self.kept_scale, self.input_shape = kept_scale, input_shape

    def _apply(self, model, *, rescale: bool = True) -> None:
        """Mask ``model``; ``rescale=False`` for weights loaded from a checkpoint of this run, whose
        kept weights were rescaled when it started."""
        apply_masks(model, self.masks, kept_scale=self.kept_scale if rescale else "none",
                    input_shape=self.input_shape)

    @classmethod
    def from_model(cls, model, sparsity, *, kept_scale: str = "none", input_shape=None, **score_opts):
        """Score ``model`` now (before training) and calibrate; see :func:`masks_for_model` for the
        options."""
        return cls(masks_for_model(model, sparsity, **score_opts), kept_scale=kept_scale, input_shape=input_shape)
