"""YOPO saliency for Hugging Face transformers at initialization, streamed layer by layer.

Nothing is downloaded: a config is a preset built in code, a local ``config.json``, or a
transformers model type with overrides (:func:`hf_config`). The model is instantiated on the
``meta`` device only to enumerate its prunable layers (the one rule of :mod:`yopo.core.layers`:
``nn.Linear`` and ``Conv1D`` weights; embeddings and weights tied to them are never pruned), and
each weight is then materialized on its own from a per-layer seeded init that follows the model's
init scheme (``normal(0, initializer_range)``; GPT-2's residual projections ``c_proj`` use
``initializer_range / sqrt(2 n_layer)``; configs without ``initializer_range``, such as T5, use
``initializer_factor / sqrt(fan_in)``, T5's scheme up to its per-projection constants), scored,
written to disk and freed. Peak memory is a few copies of the largest single layer plus one shard.

Scores are written as safetensors shards (default float16: 2 bytes per weight). Calibration over
them is streaming too (:func:`stream_calibrate`): the global order of YOPO-G (forced ``min_keep``
entries first, then score, ties to the lower position in layer order) is found from a 65,536-bin
histogram of the 16-bit score patterns (exact for 16-bit scores, whose bit patterns order like the
values), then masks follow in a second pass. The masks equal ``mort(scores, s, mode="global")`` on
the stored (16-bit) scores exactly; the only approximation is the 16-bit rounding of the scores
themselves. Pass 1 histograms all scores (and the few forced ones); the threshold, median and MAD
follow from the histograms; pass 2 writes the masks.

GPT-2 uses ``transformers.pytorch_utils.Conv1D`` (weight stored (in, out)); it is scored and
calibrated as the (out, in) matrix, like ``nn.Linear`` (rows = output features, ``min_keep`` per
output feature), and scores and masks are stored in the parameter's own shape. An untied LM head
is skipped unless ``include_lm_head``; a tied one is never pruned.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.layers import LayerScores, prunable_report
from ..methods.yopo.saliency import RENAMED, YopoConfig, layer_seed, yopo_saliency

PRESETS = {
    "tiny-gpt2": dict(family="gpt2", n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=128),
    "gpt2": dict(family="gpt2", n_layer=12, n_embd=768, n_head=12),
    "gpt2-medium": dict(family="gpt2", n_layer=24, n_embd=1024, n_head=16),
    "gpt2-large": dict(family="gpt2", n_layer=36, n_embd=1280, n_head=20),
    "gpt2-xl": dict(family="gpt2", n_layer=48, n_embd=1600, n_head=25),
    "tiny-llama": dict(family="llama", hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, vocab_size=512),
    "llama-7b": dict(family="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
}
SCORE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# version of the layer enumeration recorded in progress.json: a run interrupted under an older rule
# (which scored GPT-2's tied LM head with include_lm_head) is not resumed under this one
LAYER_RULE = 2
CONFIG_HELP = ("a preset (" + ", ".join(PRESETS) + "), a path to a config.json (or a folder holding one), "
               "or a transformers model type (gpt2, bert, t5, llama, mistral, ...)")


def parse_overrides(items) -> dict:
    """``["n_layer=2", "tie_word_embeddings=false"]`` -> {key: value}; values are JSON when they
    parse as JSON (numbers, true/false, null, lists), else strings."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--set {item!r} must be KEY=VALUE, e.g. n_layer=2")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@contextlib.contextmanager
def _quiet_transformers():
    """transformers logs config remarks (e.g. token ids past a tiny vocabulary) as it builds;
    they are not ours to report."""
    from transformers.utils import logging as hf_logging
    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)


def hf_config(name: str, overrides: dict | None = None, **kw):
    """A transformers config without any download: a preset name from ``PRESETS``, a path to a
    local ``config.json`` (or a folder holding one), or a transformers model type (``"bert"``,
    ``"t5"``, ``"mistral"``, ...) at its defaults; ``overrides`` (and keywords) replace settings
    and must name settings the config has."""
    from transformers import CONFIG_MAPPING, AutoConfig

    overrides = dict(overrides or {}, **kw)
    if not isinstance(name, str) or not name:
        raise ValueError(f"hf config {name!r} must be {CONFIG_HELP}")
    if name in PRESETS:
        base = dict(PRESETS[name])
        model_type = base.pop("family")
    elif name.endswith(".json") or os.sep in name or Path(name).exists():
        path = Path(name) / "config.json" if Path(name).is_dir() else Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"hf config {name!r}: no such file")
        try:
            base = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"hf config {str(path)!r} is not valid JSON ({type(e).__name__})") from None
        if not isinstance(base, dict) or not isinstance(base.get("model_type"), str):
            raise ValueError(f"hf config {str(path)!r} has no \"model_type\" entry (a transformers config.json has one)")
        model_type = base.pop("model_type")
    else:
        base, model_type = {}, name
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"hf config {name!r}: model type {model_type!r} is unknown to transformers; use {CONFIG_HELP}")
    default = CONFIG_MAPPING[model_type]()
    bad = [k for k in overrides if not hasattr(default, k)]
    if bad:
        raise ValueError(f"--set {bad[0]}=...: a {type(default).__name__} has no setting {bad[0]!r}")
    try:
        with _quiet_transformers():
            return AutoConfig.for_model(model_type, **{**base, **overrides})
    except (ValueError, TypeError, AttributeError, KeyError, AssertionError) as e:
        raise ValueError(f"hf config {name!r} with {overrides}: {type(e).__name__}: {e}".split("\n")[0]) from None


@dataclass(frozen=True)
class LinearSpec:
    """One prunable weight of a transformers model, as scored."""

    name: str  # parameter name, e.g. "transformer.h.0.attn.c_attn.weight"
    shape: tuple[int, ...]  # the parameter's shape
    transposed: bool  # Conv1D: the parameter is (in, out); scored as (out, in)
    std: float  # init std of the model's scheme

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def meta_model(config):
    """The model of ``config`` on the meta device (no memory): a causal LM when transformers has
    one for it, else a seq2seq LM (T5), else the bare model."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    for cls in (AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModel):
        if type(config) in cls._model_mapping:
            try:
                with _quiet_transformers(), torch.device("meta"):
                    return cls.from_config(config)
            except (ValueError, TypeError, AttributeError, KeyError, AssertionError, RuntimeError) as e:
                raise ValueError(f"transformers cannot build a {config.model_type} model from this config "
                                 f"({type(e).__name__}: {e})".split("\n")[0]) from None
    raise ValueError(f"transformers has no model class for config type {type(config).__name__}")


def enumerate_layers(config, include_lm_head: bool = False) -> tuple[list[LinearSpec], list[str]]:
    """(specs, skipped): the prunable layers of ``config``'s model in module order, by the rule
    of :mod:`yopo.core.layers`, and one line for each weight left out (and why)."""
    model = meta_model(config)
    report = prunable_report(model)
    std = getattr(config, "initializer_range", None)
    factor = float(getattr(config, "initializer_factor", 1.0) or 1.0)
    gpt2 = getattr(config, "model_type", "") == "gpt2"
    n_layer = getattr(config, "n_layer", None)
    out, skipped = [], report.lines()
    for l in report.layers:
        if not include_lm_head and l.module_name.split(".")[-1] == "lm_head":
            skipped.append(f"not pruned: {l.name} {l.shape}: the LM head (include it with include_lm_head)")
            continue
        s = float(std) if std is not None else factor / math.sqrt(l.cols)
        if gpt2 and l.module_name.endswith("c_proj"):  # GPT-2's scaled residual init
            s = s / math.sqrt(2 * n_layer)
        out.append(LinearSpec(l.name, l.shape, l.transposed, s))
    del model
    if not out:
        raise ValueError(f"the {config.model_type} model has no prunable layer to score"
                         + ("" if include_lm_head else " (its LM head is skipped unless include_lm_head)"))
    return out, skipped


def linear_specs(config, include_lm_head: bool = False) -> list[LinearSpec]:
    """The prunable layers of ``config``'s model (see :func:`enumerate_layers`), enumerated on the
    meta device (no memory, no download), in module order; tied weights listed once."""
    return enumerate_layers(config, include_lm_head)[0]


def materialize(spec: LinearSpec, seed: int) -> torch.Tensor:
    """The layer's initial weight in the scored (out, in) orientation, float32 on CPU, from a
    per-layer generator: the same for every run, whatever else is materialized."""
    g = torch.Generator().manual_seed(layer_seed(seed, "init:" + spec.name))
    shape = spec.shape[::-1] if spec.transposed else spec.shape
    return torch.randn(shape, generator=g).mul_(spec.std)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save_shard(tensors: dict, path: Path, meta: dict) -> None:
    from ..core.io import save_safetensors
    save_safetensors(path, tensors, metadata={"yopo_format": "shard/1", "meta": json.dumps(meta)})


def check_stream_args(*, score_dtype: str = "float16", shard_mb: float = 1024.0, max_layers: int | None = None,
                      out_dir=None) -> None:
    """One-line errors for settings :func:`stream_saliency` cannot use, before anything is written."""
    from ..core.io import check_out_dir
    from ..core.validate import check_choice, check_float, check_int
    check_choice("score_dtype", score_dtype, sorted(SCORE_DTYPES))
    check_float("shard_mb", shard_mb, 0.0, low_open=True)
    if max_layers is not None:
        check_int("max_layers", max_layers, 1)
    if out_dir is not None:
        check_out_dir(out_dir, "out")


def stream_saliency(config, cfg: YopoConfig, out_dir, *, seed: int = 0, score_dtype: str = "float16",
                    shard_mb: float = 1024.0, include_lm_head: bool = False, max_layers: int | None = None,
                    log=None, resume: bool = True) -> dict:
    """Score every linear layer of ``config``'s model one at a time and write the scores (in the
    parameters' shapes, ``score_dtype``) to ``out_dir/scores-XXXXX.safetensors`` shards plus
    ``out_dir/manifest.json``. Returns the manifest (layers, shards, skipped weights and why, timings, peak RSS).
    ``max_layers`` stops after that many layers (for timing a few layers).

    Resumable: after every shard, ``out_dir/progress.json`` records the layers written so far; a
    rerun with the same settings (``resume=True``) continues after them, an interrupted run loses at
    most one shard of work. A folder holding a run with other settings is refused."""
    check_stream_args(score_dtype=score_dtype, shard_mb=shard_mb, max_layers=max_layers, out_dir=out_dir)
    specs, skipped = enumerate_layers(config, include_lm_head=include_lm_head)
    if max_layers is not None:
        specs = specs[:max_layers]
    out_dir = Path(out_dir)  # created only once the settings and the model are known to be good
    out_dir.mkdir(parents=True, exist_ok=True)
    dt = SCORE_DTYPES[score_dtype]
    layers, shards, buf, buf_bytes = [], [], {}, 0
    t0 = time.perf_counter()
    t_nmf = 0.0
    from ..core.io import write_json
    key = json.loads(json.dumps({"config": config.to_dict(), "settings": vars_of(cfg), "seed": seed,
                                 "score_dtype": score_dtype, "include_lm_head": include_lm_head,
                                 "shard_mb": shard_mb, "max_layers": max_layers,
                                 "layer_rule": LAYER_RULE}, sort_keys=True))
    progress = out_dir / "progress.json"
    if progress.is_file():
        prog = json.loads(progress.read_text())
        if isinstance(prog["key"].get("settings"), dict):  # folders written before the YopoConfig renames
            prog["key"]["settings"] = {RENAMED.get(k, k): v for k, v in prog["key"]["settings"].items()}
        if prog["key"] != key:
            raise ValueError(f"{out_dir} holds a streamed run with other settings; use another output folder")
        if resume:
            layers, shards = prog["layers"], prog["shards"]
            if log is not None and layers:
                log(f"resuming after {len(layers)} of {len(specs)} layers ({len(shards)} shards on disk)")

    def flush():
        nonlocal buf, buf_bytes
        if buf:
            fname = f"scores-{len(shards):05d}.safetensors"
            _save_shard(buf, out_dir / fname, {"score_dtype": score_dtype})
            shards.append(fname)
            buf, buf_bytes = {}, 0
            write_json(progress, {"key": key, "layers": layers, "shards": shards})

    from ..core.progress import track  # a bar with ETA on a terminal
    for i, spec in enumerate(track(specs, "yopo hf", "layer")):
        if i < len(layers):  # written before an interruption
            continue
        w = materialize(spec, seed)
        t = time.perf_counter()
        s = yopo_saliency({spec.name: w}, cfg, seed=seed)[spec.name]
        t_nmf += time.perf_counter() - t
        del w
        s = (s.t() if spec.transposed else s).to(dt).contiguous()
        nbytes = s.numel() * s.element_size()
        if buf and buf_bytes + nbytes > shard_mb * 2**20:
            flush()
        buf[spec.name] = s
        buf_bytes += nbytes
        layers.append({"name": spec.name, "shape": list(spec.shape), "shard": len(shards)})
        del s
        if log is not None:
            log(f"[{i + 1}/{len(specs)}] {spec.name} {tuple(spec.shape)} "
                f"{time.perf_counter() - t0:.1f}s peak RSS {peak_rss_mb():.0f} MiB")
    flush()
    transposed = {sp.name: sp.transposed for sp in specs}
    layers = [dict(l, shard=shards[l["shard"]], transposed=transposed[l["name"]]) for l in layers]
    manifest = {
        "yopo_format": "stream/1", "config": config.to_dict(), "settings": vars_of(cfg), "seed": seed,
        "score_dtype": score_dtype, "layers": layers, "shards": shards, "skipped": skipped,
        "numel": sum(math.prod(l["shape"]) for l in layers),
        "seconds": time.perf_counter() - t0, "nmf_seconds": t_nmf, "peak_rss_mb": peak_rss_mb(),
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def vars_of(cfg) -> dict:
    import dataclasses
    return dataclasses.asdict(cfg)


def read_manifest(out_dir) -> dict:
    """The ``manifest.json`` of a finished stream folder (one-line errors when there is none)."""
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir}: no manifest.json (not a finished `yopo hf` score folder)")
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({type(e).__name__}; a damaged file)") from None
    if not isinstance(man, dict) or man.get("yopo_format") != "stream/1" or not isinstance(man.get("layers"), list):
        raise ValueError(f"{path} is not a yopo stream manifest (yopo_format stream/1)")
    if any("transposed" not in l for l in man["layers"]):
        warnings.warn(f"{path} was written by an older yopo (no layer orientation): every layer is calibrated "
                      "with rows = its first dimension")
    return man


def iter_layers(out_dir):
    """Yield (name, score tensor in the parameter's shape, transposed) in layer order, one layer
    in memory; ``transposed``: the parameter is stored (in, out) (Conv1D)."""
    from safetensors import safe_open
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    handles = {}
    try:
        for l in manifest["layers"]:
            f = handles.get(l["shard"])
            if f is None:
                handles.clear()  # one shard open at a time
                f = handles[l["shard"]] = safe_open(str(out_dir / l["shard"]), framework="pt")
            yield l["name"], f.get_tensor(l["name"]), bool(l.get("transposed", False))
    finally:
        handles.clear()


def iter_scores(out_dir):
    """Yield (name, score tensor in the parameter's shape) in layer order, one layer in memory."""
    for name, s, _ in iter_layers(out_dir):
        yield name, s


def _bits(s: torch.Tensor) -> torch.Tensor:
    """16-bit scores -> int64 keys that order like the values (scores are >= 0; -0 is mapped to 0)."""
    b = s.contiguous().view(torch.int16).to(torch.int64)
    return b.clamp_(min=0)  # a set sign bit can only be -0.0 here (scores are |.|), which is 0


def _hist_median(vals: torch.Tensor, counts: torch.Tensor, total: int) -> float:
    """Median (mean of the two middle values for even n) of a multiset given as sorted distinct
    values and their counts."""
    cum = torch.cumsum(counts, 0)

    def kth(k):
        return float(vals[int(torch.searchsorted(cum, torch.tensor([k]))[0])])

    return kth((total + 1) // 2) if total % 2 else 0.5 * (kth(total // 2) + kth(total // 2 + 1))


def _row_chunks(s: torch.Tensor, elems: int = 1 << 22):
    """(o, d) row blocks of about ``elems`` entries (bounded memory; row order = flat order)."""
    s2 = s.reshape(s.shape[0], -1)
    step = max(1, elems // max(1, s2.shape[1]))
    return s2.split(step)


def _forced_rows(s2: torch.Tensor, min_keep: int) -> torch.Tensor:
    from ..core.selection import keep_best_along
    if min_keep <= 0:
        return torch.zeros_like(s2, dtype=torch.bool)
    return keep_best_along(s2, min_keep, dim=1)


@dataclass
class StreamCalibration:
    """Global (YOPO-G) calibration over streamed 16-bit scores."""

    target: float
    kept: int
    total: int
    threshold: float  # entries with score > threshold survive (plus ties by position, plus forced)
    ties_kept: int  # entries equal to the threshold kept, the first ones in layer/flat order
    loc: float  # median of all scores (exact on the stored values)
    scale: float  # MAD (exact on the stored values; reporting only: alpha = (threshold - loc) / scale)
    alpha: float
    layer_kept: dict

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total


def stream_calibrate(out_dir, sparsity: float, min_keep: int = 1, mask_out=None) -> StreamCalibration:
    """YOPO-G masks over score shards, two passes, one layer in memory at a time. The masks equal
    ``mort(scores, sparsity, mode="global", min_keep=min_keep)`` on the stored scores. With
    ``mask_out``, the masks are written bit-packed (``mask/1`` format, via :func:`yopo.save_mask`)."""
    from ..core.calibration import n_keep
    from ..core.validate import check_int, check_sparsity

    sparsity = check_sparsity(sparsity)
    check_int("min_keep", min_keep, 0)
    if mask_out is not None:
        from ..core.io import check_out_file
        check_out_file(mask_out, "mask_out")
    hist_forced = torch.zeros(1 << 16, dtype=torch.int64)
    hist_all = torch.zeros(1 << 16, dtype=torch.int64)
    total = forced_total = 0
    dtype = None
    for name, s, transposed in iter_layers(out_dir):
        dtype = s.dtype
        for s2 in _row_chunks(s.t() if transposed else s):  # rows = output features
            s2 = s2.contiguous()
            f = _forced_rows(s2.float(), min_keep)
            b = _bits(s2)
            hist_all += torch.bincount(b.flatten(), minlength=1 << 16)
            hist_forced += torch.bincount(b[f], minlength=1 << 16)  # few: min_keep per row
            forced_total += int(torch.count_nonzero(f))
        total += s.numel()
    hist_free = hist_all - hist_forced  # non-forced entries
    K = max(n_keep(sparsity, total), forced_total)
    need = K - forced_total  # non-forced entries to keep, from the top of the order
    above = torch.flip(torch.cumsum(torch.flip(hist_free, [0]), 0), [0])  # count of bits >= b
    # smallest bucket b with count(>= b) >= need; v = that bucket's value
    if need <= 0:
        vb, ties = 1 << 16, 0
    else:
        vb = int(torch.nonzero(above >= need).max())
        gt = int(above[vb + 1]) if vb + 1 < (1 << 16) else 0
        ties = need - gt
    to_val = (lambda b: float(torch.tensor([b], dtype=torch.int16).view(dtype)[0])) if dtype is not None else float
    threshold = to_val(vb) if vb < (1 << 16) else math.inf
    # median and MAD, exact on the stored values, from the all-entries histogram (no extra pass)
    vals = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16).view(dtype if dtype is not None
                                                                          else torch.float16).double()
    used = hist_all > 0
    vals, counts = vals[used], hist_all[used]
    med = _hist_median(vals, counts, total)
    dev, order = (vals - med).abs().sort()
    mad = _hist_median(dev, counts[order], total)
    layer_kept, masks_packed, shapes, parts_m = {}, {}, {}, []
    remaining = ties
    for name, s, transposed in iter_layers(out_dir):
        parts = []
        for s2 in _row_chunks(s.t() if transposed else s):
            s2 = s2.contiguous()  # a Conv1D's rows are strided views
            f = _forced_rows(s2.float(), min_keep)
            b = _bits(s2)
            m = f | (b > vb)
            if remaining > 0:
                eq = (b == vb) & ~f
                c = int(torch.count_nonzero(eq))
                if c <= remaining:
                    m |= eq
                    remaining -= c
                else:
                    idx = torch.nonzero(eq.flatten()).flatten()[:remaining]
                    m.view(-1)[idx] = True
                    remaining = 0
            parts.append(int(torch.count_nonzero(m)))
            if mask_out is not None:
                parts_m.append(m.flatten())
        layer_kept[name] = sum(parts)
        if mask_out is not None:
            m = torch.cat(parts_m)  # row-major over (output features, fan-in)
            if transposed:  # back to the parameter's own (in, out) order
                m = m.reshape(s.shape[1], s.shape[0]).t().flatten()
            masks_packed[name] = torch.from_numpy(np.packbits(m.numpy()))
            shapes[name] = list(s.shape)
            parts_m.clear()
    scale = mad if mad > 0 else 1.0
    kept = sum(layer_kept.values())
    cal = StreamCalibration(target=sparsity, kept=kept, total=total, threshold=threshold, ties_kept=ties,
                            loc=med, scale=mad, alpha=(threshold - med) / scale, layer_kept=layer_kept)
    if mask_out is not None:
        from ..core.family import write_packed_mask
        write_packed_mask(mask_out, masks_packed, shapes, {"sparsity": sparsity, "mode": "global",
                                                           "min_keep": min_keep, "scores": str(out_dir)})
    return cal


def load_stream_scores(out_dir) -> dict[str, torch.Tensor]:
    """All scores of a stream directory in memory (small models / tests), as float32, as
    :class:`yopo.core.layers.LayerScores` (``yopo.calibrate`` reads the Conv1D orientation)."""
    out, transposed = {}, []
    for n, s, t in iter_layers(out_dir):
        out[n] = s.float()
        if t:
            transposed.append(n)
    return LayerScores(out, transposed=transposed)


def in_memory_saliency(config, cfg: YopoConfig, *, seed: int = 0, include_lm_head: bool = False) -> dict:
    """The same scores computed the ordinary way: all weights materialized at once, batched
    saliency (for checking the streamed result on small configs)."""
    specs = linear_specs(config, include_lm_head=include_lm_head)
    weights = {s.name: materialize(s, seed) for s in specs}
    S = yopo_saliency(weights, cfg, seed=seed)
    return LayerScores({s.name: (S[s.name].t() if s.transposed else S[s.name]).contiguous() for s in specs},
                       transposed=[s.name for s in specs if s.transposed])


def default_threads_env() -> None:
    """Prefer passive OpenMP waiting (set before torch starts its thread pool; a no-op after):
    on a shared CPU, spinning threads of small GEMMs slow each other down badly."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
