"""Models with weights from a local checkpoint: nothing is downloaded.

* :func:`from_state_dict_file` - a named architecture (``resnet20``, ``tv:resnet18``, ...) with
  the weights of a state-dict file: ``.pth``/``.pt``/``.bin`` (``torch.load(weights_only=True)``:
  a torchvision checkpoint, ``torch.save(model.state_dict())``, or a dict holding it under
  ``state_dict``/``model``) or ``.safetensors``. ``num_classes`` defaults to the classifier's
  size in the checkpoint. A DDP ``module.`` prefix is stripped; masks of older yopo checkpoints
  (``weight_mask`` entries) are returned separately.
* :func:`from_hf_folder` - a Hugging Face model folder (``config.json`` + ``model.safetensors``)
  through ``transformers``' ``from_pretrained(folder, local_files_only=True)``, the class named by
  the config's ``architectures``.
* :func:`load_pretrained` - either, by what the path is (a folder = Hugging Face).

Errors are one line naming the file and the first mismatching keys.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

STATE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (CPU), unwrapped from ``{"state_dict": ...}`` /
    ``{"model": ...}`` and without a DDP ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix not in STATE_SUFFIXES:
        raise ValueError(f"checkpoint {str(path)!r} has suffix {path.suffix!r}; allowed: {list(STATE_SUFFIXES)} "
                         f"or a Hugging Face model folder")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as e:
            msg = f"checkpoint {str(path)!r} is not a readable safetensors file ({e})"
            raise ValueError(msg.split("\n")[0]) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - unpickling raises many types; all mean "not a state dict"
            raise ValueError(f"checkpoint {str(path)!r} is not a weights-only state dict "
                             f"({type(e).__name__}: {e})".split("\n")[0]) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict {{name: tensor}}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _classifier_outputs(model: nn.Module, state: dict) -> int | None:
    """Output size of the model's last Linear layer as stored in ``state`` (None if absent)."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        return None
    w = state.get(f"{last}.weight" if last else "weight")
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 2 else None


def from_state_dict_file(name: str, path, num_classes: int | None = None, **kwargs) -> tuple[nn.Module, dict]:
    """(model ``name`` with the checkpoint's weights, masks found in the checkpoint or {})."""
    from ..core.masks import split_state_dict
    from . import get_model

    state, masks = split_state_dict(read_state_dict(path))
    model = get_model(name, num_classes=num_classes or 10, **kwargs)
    found = _classifier_outputs(model, state)
    if num_classes is None and found is not None and found != 10:
        model = get_model(name, num_classes=found, **kwargs)
    result = model.load_state_dict(state, strict=False)
    own = model.state_dict()
    shape_bad = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if result.missing_keys or result.unexpected_keys or shape_bad:
        raise ValueError(f"checkpoint {str(path)!r} does not fit model {name!r}: missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]}")
    return model, masks


def from_hf_folder(folder) -> nn.Module:
    """A transformers model from a local folder (no download: ``local_files_only=True``)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"Hugging Face folder {str(folder)!r} has no config.json")
    try:
        import transformers
    except ImportError:
        raise ValueError("a Hugging Face model folder needs the optional package transformers "
                         "(pip install 'yopo[hf]')") from None
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    archs = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, archs[0], None) if archs else transformers.AutoModel
    if cls is None:
        raise ValueError(f"{str(folder)!r}: config.json names architecture {archs[0]!r}, which this transformers "
                         f"{transformers.__version__} does not have")
    try:
        return cls.from_pretrained(folder, local_files_only=True)
    except OSError as e:  # missing or unreadable weight files
        raise ValueError(f"{str(folder)!r}: {e}".split("\n")[0]) from None


def load_pretrained(name: str | None, path, num_classes: int | None = None, **kwargs) -> tuple[nn.Module, dict]:
    """(model, masks found in the checkpoint): a folder is a Hugging Face model (``name`` unused),
    a file a state dict for architecture ``name``."""
    if Path(path).is_dir():
        return from_hf_folder(path), {}
    if not name:
        raise ValueError(f"checkpoint {str(path)!r} is a state dict: name the architecture (--model)")
    return from_state_dict_file(name, path, num_classes, **kwargs)
