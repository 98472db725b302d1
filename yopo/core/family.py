"""The supermask family artifact: the once-only saliency of a model, saved with an architecture
fingerprint, from which a mask at any sparsity / mode is derived without rescoring.

File format (safetensors): one float32 tensor per prunable layer, keyed by parameter name, in the
weight's own shape, plus metadata ``{"yopo_format": "family/1", "meta": <json>, "sha256": <hex>}``
where meta holds the method, its settings, the init seed, the model name and the fingerprint
(layer names and shapes in order; an entry ``[name, shape, "transposed"]`` marks a weight stored
(in, out), an HF ``Conv1D``). A single mask is exported bit-packed (``mask/1``): one uint8 tensor
of ``np.packbits`` per layer (``ceil(numel / 8)`` bytes), the shapes in meta, and a sha256 too.

The meta also holds ``calibration``: the :class:`CalibrationSettings` the family's mask was printed
with (the base that :meth:`Family.calibrate` re-thresholds with unless told otherwise). A family made
for an ``allocation="from:<method>"`` calibration also holds that method's scores (tensors
``budget:<name>``, meta ``budget_method``), so re-thresholding needs no rescoring.

Verification on load: the format tag, the meta JSON, one stored tensor per fingerprint layer with
the fingerprint's shape (and nothing else), the packed length of every mask, and the content hash
``sha256`` over the meta JSON and the names, dtypes, shapes and bytes of the tensors
(:func:`content_hash`). A file
written before the hash existed loads with a warning ("no content hash").
Applying an artifact to a model (:func:`check_fingerprint`) requires the artifact's layers to be
exactly the model's prunable layers, same shapes, except layers the caller names to leave dense.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .calibration import Calibration, CalibrationSettings, mort, resolve_settings
from .config import from_mapping
from .io import save_safetensors
from .layers import LayerScores, matching, prunable_report

FAMILY_FORMAT = "family/1"
MASK_FORMAT = "mask/1"
TRANSPOSED = "transposed"  # fingerprint tag of a weight stored (in, out)
BUDGET_PREFIX = "budget:"  # tensor-name prefix of the budget method's scores


def fingerprint(layers) -> dict:
    """Layer names and shapes in order, and a short hash of them."""
    spec = [[l.name, list(l.shape)] + ([TRANSPOSED] if getattr(l, "transposed", False) else []) for l in layers]
    digest = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    return {"layers": spec, "hash": digest}


def fingerprint_layers(fp, what: str = "artifact") -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, transposed) of every fingerprint entry; a one-line ``ValueError`` when the
    fingerprint is malformed."""
    entries = fp.get("layers") if isinstance(fp, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{what}: its fingerprint has no layer list")
    out = []
    for e in entries:
        ok = (isinstance(e, list) and len(e) in (2, 3) and isinstance(e[0], str) and isinstance(e[1], list)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in e[1])
              and (len(e) == 2 or e[2] == TRANSPOSED))
        if not ok:
            raise ValueError(f"{what}: malformed fingerprint entry {json.dumps(e)[:80]}")
        out.append((e[0], tuple(e[1]), len(e) == 3))
    if len({n for n, _, _ in out}) != len(out):
        raise ValueError(f"{what}: its fingerprint lists a layer twice")
    return out


def content_hash(tensors: dict[str, torch.Tensor], names, meta_text: str = "") -> str:
    """sha256 over ``meta_text`` (the file's meta JSON) and the name, dtype, shape and raw bytes of
    each tensor, in the order of ``names``."""
    h = hashlib.sha256(meta_text.encode())
    for n in names:
        t = tensors[n].detach().cpu().contiguous()
        h.update(json.dumps([n, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_fingerprint(expected: dict, model, allow_dense=(), what: str = "artifact") -> None:
    """Raise a one-line ``ValueError`` unless the layers of ``expected`` (a fingerprint) are
    exactly the prunable layers of ``model`` with the same shapes, except the model layers matched
    by the glob patterns ``allow_dense`` (left dense; the artifact must not cover them)."""
    report = prunable_report(model)
    have = {l.name: l for l in report.layers}
    skipped = {s.name: s.reason for s in report.skipped}
    dense = matching(report.layers, allow_dense)
    spec = fingerprint_layers(expected, what)
    for name, shape, _ in spec:
        if name not in have:
            why = f" ({skipped[name]})" if name in skipped else ""
            raise ValueError(f"{what} layer {name!r} (shape {shape}) is not a prunable layer of this model{why}")
        if have[name].shape != shape:
            raise ValueError(f"layer {name!r}: {what} shape {shape} but model shape {have[name].shape}")
        if name in dense:
            raise ValueError(f"{what} prunes layer {name!r}, which the pattern {dense[name]!r} asks to leave dense")
    covered = {name for name, _, _ in spec}
    missing = [l for l in report.layers if l.name not in covered and l.name not in dense]
    if missing:
        names = ", ".join(l.name for l in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise ValueError(
            f"{what} covers {len(covered)} of the model's {len(have)} prunable layers; {len(missing)} layers "
            f"({sum(l.numel for l in missing):,} weights) would stay dense: {names}; name them to leave dense "
            "(allow_dense / --exclude patterns) or use an artifact made for this model")


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
        layers = list(layers)
        if [l.name for l in layers] != list(scores) or any(tuple(scores[l.name].shape) != l.shape for l in layers):
            raise ValueError("scores must have one tensor per layer, in the layers' order and shapes; got "
                             f"{len(scores)} scores for {len(layers)} layers")
        meta = {"method": method, "settings": settings, "seed": seed, "model": model_name,
                "fingerprint": fingerprint(layers)}
        if calibration is not None:
            meta["calibration"] = calibration.to_dict()
        if (budget_method is None) != (budget_scores is None):
            raise ValueError("pass budget_method and budget_scores together")
        if budget_method is not None:
            meta["budget_method"] = budget_method
            budget_scores = {l.name: budget_scores[l.name].detach().float().cpu().contiguous() for l in layers}
        transposed = [l.name for l in layers if l.transposed]
        return cls(LayerScores({n: s.detach().float().cpu().contiguous() for n, s in scores.items()},
                               transposed=transposed), meta, budget_scores)

    @property
    def transposed(self) -> frozenset[str]:
        """Layers stored (in, out) (HF Conv1D), from the fingerprint."""
        return frozenset(n for n, _, t in fingerprint_layers(self.meta.get("fingerprint")) if t)

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
        return mort(LayerScores(self.scores, transposed=self.transposed), sparsity, s, budget_scores=self.budget_for(s))

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

    def check(self, model, allow_dense=()) -> None:
        """Raise a one-line ``ValueError`` unless this family covers exactly the prunable layers of
        ``model`` (same shapes), except the layers the family was made without (its ``exclude``)
        and those matched by ``allow_dense`` (glob patterns of layers to leave dense)."""
        check_fingerprint(self.meta.get("fingerprint"), model,
                          allow_dense=tuple(self.meta.get("exclude") or ()) + tuple(allow_dense))

    def save(self, path) -> None:
        names = [n for n, _, _ in fingerprint_layers(self.meta.get("fingerprint"))]
        if sorted(names) != sorted(self.scores):
            raise ValueError("the family's scores do not match its fingerprint")
        tensors = {n: self.scores[n] for n in names}
        if self.budget_scores is not None:
            tensors.update({BUDGET_PREFIX + n: self.budget_scores[n] for n in names})
        text = json.dumps(self.meta, sort_keys=True)
        meta = {"yopo_format": FAMILY_FORMAT, "meta": text, "sha256": content_hash(tensors, list(tensors), text)}
        save_safetensors(path, tensors, metadata=meta)

    @classmethod
    def load(cls, path) -> "Family":
        """Read and verify a family file (format, fingerprint, stored shapes, content hash)."""
        md, meta = _read_meta(path, FAMILY_FORMAT)
        meta = _upgrade_meta(meta)
        spec = fingerprint_layers(meta.get("fingerprint"), f"{path}")
        names = [n for n, _, _ in spec]
        budget = bool(meta.get("budget_method"))
        stored = names + ([BUDGET_PREFIX + n for n in names] if budget else [])
        scores = _load_tensors(path)
        _check_names(path, scores, stored)
        for name, shape, _ in spec:
            for key in ([name, BUDGET_PREFIX + name] if budget else [name]):
                s = scores[key]
                if tuple(s.shape) != shape or s.dtype != torch.float32:
                    raise ValueError(f"{path}: stored scores of {key!r} are {s.dtype} {tuple(s.shape)} but the "
                                     f"fingerprint says float32 {shape}")
        _check_hash(path, md, scores, stored)
        transposed = [n for n, _, t in spec if t]
        return cls(LayerScores({n: scores[n] for n in names}, transposed=transposed), meta,
                   {n: scores[BUDGET_PREFIX + n] for n in names} if budget else None)


def _upgrade_meta(meta: dict) -> dict:
    """Families written before the YOPO option renames (init/solver/threads -> nmf_*) read with the
    new names."""
    if meta.get("method") == "yopo" and isinstance(meta.get("settings"), dict):
        from ..methods.yopo.saliency import RENAMED
        meta["settings"] = {RENAMED.get(k, k): v for k, v in meta["settings"].items()}
    return meta


def _read_meta(path, expected_format: str) -> tuple[dict, dict]:
    """(safetensors metadata, parsed yopo meta) with one-line errors for every way they can be bad."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: {'is a folder, not a file' if Path(path).is_dir() else 'No such file'}")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except (SafetensorError, OSError) as e:  # a file of another format (or unreadable)
        raise ValueError(f"{path} is not a safetensors file ({type(e).__name__}: {e})".split("\n")[0]) from None
    if md.get("yopo_format") != expected_format:
        raise ValueError(f"{path}: yopo_format={md.get('yopo_format')!r}, expected {expected_format!r}")
    if "meta" not in md:
        raise ValueError(f"{path}: the {expected_format} metadata has no 'meta' entry (a damaged file)")
    try:
        meta = json.loads(md["meta"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its metadata is not valid JSON ({e.msg} at char {e.pos}; a damaged file)") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its metadata is a JSON {type(meta).__name__}, not an object (a damaged file)")
    return md, meta


def _load_tensors(path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: its tensors cannot be read ({type(e).__name__}: {e}; a damaged file)"
                         .split("\n")[0]) from None


def _check_names(path, tensors: dict, names) -> None:
    missing = [n for n in names if n not in tensors]
    extra = sorted(set(tensors) - set(names))
    if missing:
        raise ValueError(f"{path}: no stored tensor for layer {missing[0]!r} ({len(missing)} missing)")
    if extra:
        raise ValueError(f"{path}: stored tensor {extra[0]!r} is not in its layer list ({len(extra)} extra)")


def _check_hash(path, md: dict, tensors: dict, names) -> None:
    want = md.get("sha256")
    if want is None:
        warnings.warn(f"{path}: no content hash (written by an older yopo); its contents are not verified")
        return
    got = content_hash(tensors, names, md["meta"])
    if got != want:
        raise ValueError(f"{path}: content hash mismatch (sha256 {got[:12]}..., the file records "
                         f"{str(want)[:12]}...): the file is damaged or was modified")


def write_packed_mask(path, packed: dict[str, torch.Tensor], shapes: dict[str, list[int]], meta: dict) -> None:
    """Write ``mask/1``: uint8 ``np.packbits`` tensors, their shapes in meta, a content hash."""
    text = json.dumps(dict(meta, shapes=shapes), sort_keys=True)
    save_safetensors(path, packed, metadata={"yopo_format": MASK_FORMAT, "meta": text,
                                             "sha256": content_hash(packed, sorted(packed), text)})


def save_mask(path, masks: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Write masks bit-packed (1 bit per weight)."""
    packed, shapes = {}, {}
    for n, m in masks.items():
        packed[n] = torch.from_numpy(np.packbits(m.detach().cpu().numpy().astype(bool).ravel()))
        shapes[n] = list(m.shape)
    write_packed_mask(path, packed, shapes, dict(meta or {}))


def load_mask(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a bit-packed mask file: ({name: bool tensor}, meta)."""
    md, meta = _read_meta(path, MASK_FORMAT)
    shapes = meta.get("shapes")
    if not isinstance(shapes, dict) or not shapes:
        raise ValueError(f"{path}: its metadata has no layer shapes (a damaged file)")
    packed = _load_tensors(path)
    _check_names(path, packed, list(shapes))
    masks = {}
    for n, shape in shapes.items():
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise ValueError(f"{path}: malformed shape {json.dumps(shape)[:40]} for layer {n!r}")
        numel = int(np.prod(shape, dtype=np.int64))
        p = packed[n]
        if p.dtype != torch.uint8 or p.dim() != 1 or p.numel() != (numel + 7) // 8:
            raise ValueError(f"{path}: layer {n!r} of shape {tuple(shape)} needs {(numel + 7) // 8} packed bytes; "
                             f"the file holds {p.numel()} ({p.dtype}, {p.dim()}-D)")
    _check_hash(path, md, packed, sorted(packed))
    for n, shape in shapes.items():
        numel = int(np.prod(shape, dtype=np.int64))
        bits = np.unpackbits(packed[n].numpy())[:numel].astype(bool)
        masks[n] = torch.from_numpy(bits).reshape(shape)
    return masks, meta
