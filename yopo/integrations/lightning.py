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

from ..core.masks import reapply
from .masking import MaskHolder


class YopoMaskCallback(MaskHolder, Callback):
    """Apply ``masks`` when fitting starts and keep pruned weights at 0 after every step.
    ``masks``: a dict {parameter name: bool tensor}, a :class:`yopo.Family` (with ``sparsity``)
    or a family / mask file path; ``kept_scale``, ``input_shape`` and ``from_model``: see
    :class:`yopo.integrations.masking.MaskHolder`."""

    def __init__(self, masks, *, sparsity=None, mode: str = "global", kept_scale: str = "none",
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self._hold(masks, sparsity=sparsity, mode=mode, kept_scale=kept_scale, input_shape=input_shape)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            # setup runs before Lightning restores a checkpoint, so the rescaled init it applies
            # to is overwritten by the checkpoint's (already rescaled) weights on a resumed fit
            self._apply(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        reapply(pl_module)
