"""Which weights are prunable, and how they are flattened: one rule for every scoring method, the
Python API and ``yopo hf``.

Prunable weights (keyed by parameter name):

* the ``weight`` of ``nn.Conv1d/2d/3d`` and ``nn.Linear`` (and their subclasses, e.g. the
  ``NonDynamicallyQuantizableLinear`` ``out_proj`` of ``nn.MultiheadAttention``);
* the ``weight`` of Hugging Face ``transformers.pytorch_utils.Conv1D`` (GPT-2's attention and MLP
  layers). It is stored ``(in, out)``; it is flattened *transposed*, so the rows of its matrix are
  its output features, like every other layer (``PrunableLayer.transposed``). Scores and masks
  still have the parameter's own ``(in, out)`` shape;
* ``nn.MultiheadAttention.in_proj_weight`` (``(3E, E)``: rows are the stacked q, k, v output
  features), or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when the key/value sizes
  differ from the embedding size.

Never pruned: biases, norm layers, embeddings (``nn.Embedding``/``nn.EmbeddingBag``) and any other
parameter. A weight shared by several modules (tied weights) is listed once, under the first name
``named_modules`` reaches it by; a prunable module whose weight *is* an embedding's weight (GPT-2's
and BERT's tied LM heads) is skipped, so an embedding is never pruned through a tie.
:func:`prunable_report` says what was skipped and why.
"""
from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass

import torch
from torch import nn

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)
MHA_SEPARATE = ("q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(frozen=True)
class PrunableLayer:
    """One prunable weight: its parameter name, owning module name and (own) shape."""

    name: str  # parameter name, e.g. "features.0.weight", "encoder.0.self_attn.in_proj_weight"
    module_name: str  # e.g. "features.0"
    shape: tuple[int, ...]  # the parameter's own shape
    transposed: bool = False  # stored (in, out) (HF Conv1D): output features are dim 1

    @property
    def attr(self) -> str:
        """The parameter's attribute name on its module ("weight", "in_proj_weight", ...)."""
        return self.name.rpartition(".")[2]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def rows(self) -> int:
        """Output channels / features (``o`` in the paper)."""
        return self.shape[1] if self.transposed else self.shape[0]

    @property
    def cols(self) -> int:
        """Fan-in ``d = i * k_h * k_w`` (or ``in_features``)."""
        return self.numel // self.rows

    def to_rows(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor of the parameter's shape -> its (rows, cols) matrix, rows = output features."""
        return to_rows(t, self.transposed)

    def from_rows(self, m: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_rows`: (rows, cols) -> the parameter's own shape."""
        return from_rows(m, self.shape, self.transposed)


@dataclass(frozen=True)
class Skipped:
    """A weight-like parameter (2-D or more) that is not pruned, and why."""

    name: str
    shape: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class LayerReport:
    """The prunable layers of a model (after include/exclude) and every skipped weight, with why."""

    layers: tuple[PrunableLayer, ...]
    skipped: tuple[Skipped, ...]

    def lines(self) -> list[str]:
        """One human-readable line per skipped weight."""
        return [f"not pruned: {s.name} {tuple(s.shape)}: {s.reason}" for s in self.skipped]


class LayerScores(dict):
    """``{parameter name: tensor of the weight's own shape}`` that remembers which weights are
    stored transposed (HF ``Conv1D``), so calibration takes their rows as output features (the
    per-row ``min_keep``) and breaks ties in that row-major order. ``yopo.score`` returns one;
    a plain dict is read as "no weight is transposed"."""

    def __init__(self, data=(), transposed=()):
        super().__init__(data)
        self.transposed = frozenset(transposed)


def _is_hf_conv1d(module: nn.Module) -> bool:
    # by class identity, without importing transformers (a model using it has imported it)
    return any(c.__name__ == "Conv1D" and c.__module__ == "transformers.pytorch_utils"
               for c in type(module).__mro__)


def _candidates(module: nn.Module) -> list[tuple[str, bool]]:
    """(attribute, transposed) of the prunable weights a module owns directly."""
    if isinstance(module, PRUNABLE_TYPES):
        return [("weight", False)]
    if _is_hf_conv1d(module):
        return [("weight", True)]
    if isinstance(module, nn.MultiheadAttention):
        if isinstance(getattr(module, "in_proj_weight", None), torch.Tensor):
            return [("in_proj_weight", False)]
        return [(a, False) for a in MHA_SEPARATE]
    return []


def _matches(name: str, module_name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(module_name, pattern)


def _pname(module_name: str, attr: str) -> str:
    return f"{module_name}.{attr}" if module_name else attr


def matching(layers, patterns) -> dict[str, str]:
    """{layer name: the first pattern that matches it} for the layers (in model order) matched by
    any of ``patterns``: globs on the parameter or module name, or ``:first`` / ``:last``."""
    layers = list(layers)
    if not layers or not patterns:
        return {}
    first, last = layers[0].name, layers[-1].name
    out = {}
    for layer in layers:
        for p in patterns:
            if (p == ":first" and layer.name == first or p == ":last" and layer.name == last
                    or _matches(layer.name, layer.module_name, p)):
                out[layer.name] = p
                break
    return out


def prunable_report(
    model: nn.Module,
    exclude: tuple[str, ...] | list[str] = (),
    include: tuple[str, ...] | list[str] | None = None,
) -> LayerReport:
    """The prunable layers of ``model`` in module order, and every skipped weight with its reason
    (tied to an embedding, tied to an earlier layer, an embedding, another module type, excluded).

    ``exclude``/``include`` are glob patterns matched against the parameter name or the module name
    (``"fc"``, ``"classifier.*"``, ``"*.downsample.*"``). Two special patterns name positions:
    ``":first"`` and ``":last"`` (the first / last prunable layer, e.g. the stem conv and the
    classifier). Raises ``ValueError`` when nothing prunable is left.
    """
    embedding_of: dict[int, str] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, EMBEDDING_TYPES) and isinstance(module.weight, torch.Tensor):
            embedding_of.setdefault(id(module.weight), _pname(module_name, "weight"))
    seen: dict[int, str] = {}
    found: list[PrunableLayer] = []
    skipped: list[Skipped] = []
    for module_name, module in model.named_modules():
        for attr, transposed in _candidates(module):
            # a torch.nn.utils.prune reparametrization keeps the parameter as <attr>_orig
            weight = getattr(module, attr + "_orig", None)
            if not isinstance(weight, torch.Tensor):
                weight = getattr(module, attr, None)
            if not isinstance(weight, torch.Tensor):
                continue
            name = _pname(module_name, attr)
            if id(weight) in embedding_of:
                skipped.append(Skipped(name, tuple(weight.shape), f"tied to the embedding "
                                       f"{embedding_of[id(weight)]} (embeddings are never pruned)"))
                continue
            if id(weight) in seen:
                skipped.append(Skipped(name, tuple(weight.shape), f"the same tensor as {seen[id(weight)]} "
                                       "(tied weights are listed once)"))
                continue
            seen[id(weight)] = name
            found.append(PrunableLayer(name, module_name, tuple(weight.shape), transposed))
    # every other parameter of 2 or more dims: say why it is not pruned (biases and norm scales,
    # 1-D, are never pruned and not listed)
    for module_name, module in model.named_modules():
        for attr, p in module._parameters.items():
            if not isinstance(p, torch.Tensor) or p.dim() < 2 or id(p) in seen:
                continue
            seen[id(p)] = _pname(module_name, attr)
            why = ("an embedding (embeddings are never pruned)" if isinstance(module, EMBEDDING_TYPES)
                   else f"a parameter of {type(module).__name__}, not a prunable layer type")
            skipped.append(Skipped(_pname(module_name, attr), tuple(p.shape), why))
    if not found:
        raise ValueError(
            f"model {type(model).__name__} has no prunable layers; prunable: the weights of "
            f"{', '.join(t.__name__ for t in PRUNABLE_TYPES)}, transformers Conv1D and "
            f"MultiheadAttention's in_proj_weight" + (f" ({len(skipped)} weights skipped, e.g. "
                                                      f"{skipped[0].name}: {skipped[0].reason})" if skipped else "")
        )
    excluded = matching(found, exclude)
    for p in exclude:  # a typo in an exclude pattern would silently prune the layer it meant
        if p not in excluded.values():
            warnings.warn(f"exclude pattern {p!r} matches no prunable layer of {type(model).__name__}")
    included = matching(found, include) if include is not None else None
    kept = []
    for layer in found:
        if layer.name in excluded:
            skipped.append(Skipped(layer.name, layer.shape, f"excluded by pattern {excluded[layer.name]!r}"))
        elif included is not None and layer.name not in included:
            skipped.append(Skipped(layer.name, layer.shape, f"not matched by include={list(include)}"))
        else:
            kept.append(layer)
    if not kept:
        raise ValueError(
            f"no prunable layers left after include={list(include) if include else None} "
            f"exclude={list(exclude)}; available: {', '.join(l.name for l in found[:6])}"
            + (" ..." if len(found) > 6 else "")
        )
    return LayerReport(tuple(kept), tuple(skipped))


def prunable_layers(
    model: nn.Module,
    exclude: tuple[str, ...] | list[str] = (),
    include: tuple[str, ...] | list[str] | None = None,
) -> list[PrunableLayer]:
    """List the prunable layers of ``model`` in module order (see :func:`prunable_report` for the
    rule, the patterns, and what is skipped and why). Warns when a prunable module's weight is
    skipped because it is tied to an embedding (e.g. GPT-2's LM head)."""
    report = prunable_report(model, exclude=exclude, include=include)
    tied = [s.name for s in report.skipped if s.reason.startswith("tied to the embedding")]
    if tied:
        warnings.warn(f"{type(model).__name__}: not pruned: {', '.join(tied)} (tied to an embedding; "
                      "embeddings are never pruned)")
    return list(report.layers)


def get_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The parameter (or prune-reparametrized ``<attr>_orig``) called ``name``."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    orig = getattr(module, attr + "_orig", None)
    return orig if isinstance(orig, torch.Tensor) else getattr(module, attr)


def flat(t: torch.Tensor) -> torch.Tensor:
    """(o, i, *k) -> (o, i*prod(k)); a view where possible."""
    return t.reshape(t.shape[0], -1)


def unflat(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(o, d) -> ``shape`` (the inverse of :func:`flat`)."""
    return t.reshape(shape)


def to_rows(t: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """A weight-shaped tensor -> its (output features, fan-in) matrix: :func:`flat`, or the
    transpose of a 2-D ``(in, out)`` weight (a view either way where possible)."""
    return t.t() if transposed else flat(t)


def from_rows(m: torch.Tensor, shape: tuple[int, ...], transposed: bool = False) -> torch.Tensor:
    """The inverse of :func:`to_rows`: (rows, cols) -> ``shape`` (contiguous)."""
    return m.reshape(shape[1], shape[0]).t().contiguous() if transposed else m.reshape(shape)
