"""A Lightning ``Callback`` that trains with yopo masks.

    from yopo.integrations.lightning import YopoMaskCallback
    cb = YopoMaskCallback.from_model(lit_module, sparsity=0.9)      # names as in lit_module
    lightning.Trainer(callbacks=[cb], ...).fit(lit_module, loader)

In ``setup`` (stage ``fit``, before the strategy moves or wraps the module) the masks are applied
(:func:`yopo.apply_masks`); after every training batch (``on_train_batch_end``, i.e. after the
optimizer step with automatic optimization) the pruned weights are set to 0 again. Mask names are
parameter names of the LightningModule (e.g. ``net.0.weight`` when it holds ``self.net``).

Optional dependency: ``lightning`` (extra ``lightning``); ``pytorch_lightning`` works as well.
"""
from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError as e:
        raise ImportError("yopo.integrations.lightning needs lightning: pip install 'yopo[lightning]'") from e

from ..core.masks import KEPT_SCALES, apply_masks, reapply
from ..core.validate import check_choice
from .masking import masks_for_model, masks_from


class YopoMaskCallback(Callback):
    """Apply ``masks`` when fitting starts and keep pruned weights at 0 after every step.
    ``masks``: a dict {parameter name: bool tensor}, a :class:`yopo.Family` (with ``sparsity``)
    or a family / mask file path. ``kept_scale`` (:data:`yopo.core.masks.KEPT_SCALES`) is passed
    to :func:`yopo.apply_masks` (``layer_rms``: each layer's kept weights start at the RMS of its
    dense init; ``auto`` tests the model for normalization layers, with ``input_shape`` when the
    first layer does not tell it)."""

    def __init__(self, masks, *, sparsity=None, mode: str = "global", kept_scale: str = "none",
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.masks = masks_from(masks, sparsity=sparsity, mode=mode)
        check_choice("kept_scale", kept_scale, KEPT_SCALES)
        self.kept_scale, self.input_shape = kept_scale, input_shape

    @classmethod
    def from_model(cls, module, sparsity, *, kept_scale: str = "none", input_shape=None,
                   **score_opts) -> "YopoMaskCallback":
        """Score ``module`` now (before training) and calibrate; see
        :func:`yopo.integrations.masking.masks_for_model` for the options."""
        masks = masks_for_model(module, sparsity, **score_opts)
        return cls(masks, kept_scale=kept_scale, input_shape=input_shape)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            # setup runs before Lightning restores a checkpoint, so the rescaled init it applies
            # to is overwritten by the checkpoint's (already rescaled) weights on a resumed fit
            apply_masks(pl_module, self.masks, kept_scale=self.kept_scale, input_shape=self.input_shape)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        reapply(pl_module)
