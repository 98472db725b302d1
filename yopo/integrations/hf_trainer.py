"""A Hugging Face ``transformers.TrainerCallback`` that trains with yopo masks.

    from yopo.integrations.hf_trainer import YopoMaskCallback
    cb = YopoMaskCallback.from_model(model, sparsity=0.9, exclude=("lm_head",))   # score once, now
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

At ``on_train_begin`` the masks are applied (:func:`yopo.apply_masks`: pruned weights set to 0,
their gradients filled with 0); after every optimizer step (``on_optimizer_step``) the pruned
weights are set to 0 again (:func:`yopo.core.masks.reapply`), which also covers AdamW's decoupled
weight decay, gradient clipping and optimizer state from before the masks. Checkpoints written by
the Trainer hold plain weights (zeros where pruned): keep the masks with ``yopo.save_mask(path,
cb.masks)``; a resumed run gets the same callback, so its masks are re-applied at train begin.
Single-process and DDP training; DeepSpeed / FSDP (sharded parameters) are not supported.

Optional dependency: ``transformers`` (extra ``hf``; the Trainer also needs ``accelerate``).
"""
from __future__ import annotations

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("yopo.integrations.hf_trainer needs transformers: pip install 'yopo[hf]'") from e

from ..core.masks import reapply
from .masking import MaskHolder


class YopoMaskCallback(MaskHolder, TrainerCallback):
    """Apply ``masks`` at train begin and keep pruned weights at 0 after every optimizer step.
    ``masks``: a dict {parameter name: bool tensor}, a :class:`yopo.Family` (with ``sparsity``)
    or a family / mask file path; ``kept_scale``, ``input_shape`` and ``from_model``: see
    :class:`yopo.integrations.masking.MaskHolder`."""

    def __init__(self, masks, *, sparsity=None, mode: str = "global", kept_scale: str = "none",
                 input_shape: tuple[int, ...] | None = None):
        self._hold(masks, sparsity=sparsity, mode=mode, kept_scale=kept_scale, input_shape=input_shape)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise ValueError("YopoMaskCallback: the Trainer passed no model to on_train_begin")
        # a resumed run (global_step > 0) has loaded its checkpoint, whose kept weights were
        # rescaled when the run started: rescaling again would measure the RMS over the zeros
        self._apply(model, rescale=state.global_step == 0)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None:
            reapply(model)
