"""``yopo hf``: YOPO saliency of a Hugging Face transformers config at initialization, streamed
layer by layer to score shards (no weights are downloaded or held in memory at once), then a
streaming global calibration."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.calibration import CalibrationSettings
from ..core.config import add_dataclass_args, from_args, opt, sparsity_rule, validate_fields
from .settings import add_calibration_args, add_yopo_args, calibration_from, yopo_from


@dataclass(frozen=True)
class HfArgs:
    hf_config: str = opt("gpt2", "the model's config: a preset built in code (tiny-gpt2, gpt2, gpt2-medium, "
                         "gpt2-large, gpt2-xl, tiny-llama, llama-7b), a local config.json (or a folder holding "
                         "one), or a transformers model type at its defaults (bert, t5, mistral, ...)")
    set: tuple[str, ...] = opt((), "override config settings as KEY=VALUE (JSON values), e.g. --set n_layer=2 "
                               "n_embd=64; each KEY must be a setting of that config")
    out: str = opt("yopo_hf_scores", "folder for the score shards and manifest.json")
    seed: int = opt(0, "seed of the per-layer init and of the NMF", low=0)
    score_dtype: str = opt("float16", "dtype of the stored scores", ("float16", "bfloat16"))
    shard_mb: float = opt(1024.0, "target shard size in MiB (> 0)", low=0.0, low_open=True)
    include_lm_head: bool = opt(False, "also score an untied LM head (a head tied to the embedding is never pruned)")
    max_layers: int | None = opt(None, "stop after this many layers, >= 1 (timing runs)", low=1)
    resume: bool = opt(True, "continue an interrupted run in --out (same settings) after its last shard")
    sparsity: float | None = opt(0.9, "then calibrate YOPO-G masks at this sparsity (none: skip)", check=sparsity_rule)
    mask_out: str | None = opt(None, "write the bit-packed masks here")

    def __post_init__(self):
        validate_fields(self)


#: what the streamed calibration computes (global MORT with median/MAD statistics); of the
#: calibration flags only --min-keep can change it
STREAMABLE = CalibrationSettings(allocation="global", ranking="score", robust="mad", col_keep=0, min_layer_density=0.0,
                                 calibration_solver="exact", exclude=())


def add_parser(sub, name):
    p = sub.add_parser(name, help="stream YOPO saliency of a transformers config (no download) to disk",
                       description="Enumerate the prunable layers of a transformers model built from a config "
                       "(on the meta device; Linear and Conv1D weights, never embeddings or weights tied to "
                       "them), materialize each weight from a seeded init, score it, write the scores as shards, "
                       "then calibrate a global mask by streaming over the shards.")
    add_dataclass_args(p, HfArgs)
    add_calibration_args(p)
    add_yopo_args(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..integrations.hf_stream import default_threads_env
    default_threads_env()
    from ..core.io import check_out_dir, check_out_file
    from ..core.progress import get_logger
    from ..integrations.hf_stream import (check_stream_args, hf_config, parse_overrides, peak_rss_mb,
                                          stream_calibrate, stream_saliency)

    a = from_args(HfArgs, args)  # validated now, not after a long scoring pass
    cfg = yopo_from(args)
    settings = calibration_from(args, base=STREAMABLE)
    cannot = [f"--{k.replace('_', '-')}" for k, v in settings.to_dict().items()
              if k != "min_keep" and v != STREAMABLE.to_dict()[k]]
    if cannot:
        raise ValueError(f"{', '.join(cannot)}: the streamed calibration is global MORT (median/MAD, --min-keep); "
                         f"calibrate the shards in memory (yopo.integrations.hf_stream.load_stream_scores) for others")
    # every setting is checked before anything is scored or written
    check_out_dir(a.out, "--out")
    check_stream_args(score_dtype=a.score_dtype, shard_mb=a.shard_mb, out_dir=a.out)
    if a.mask_out:
        check_out_file(a.mask_out, "--mask-out")
    config = hf_config(a.hf_config, parse_overrides(a.set))
    man = stream_saliency(config, cfg, a.out, seed=a.seed, score_dtype=a.score_dtype, shard_mb=a.shard_mb,
                          include_lm_head=a.include_lm_head, max_layers=a.max_layers, resume=a.resume,
                          log=get_logger("hf").info)  # stderr lines that keep the progress bar whole
    for line in man["skipped"]:  # what the prunable-layer rule left out, and why
        print(line)
    print(f"scored {len(man['layers'])} layers, {man['numel']:,} weights in {man['seconds']:.1f}s "
          f"(NMF {man['nmf_seconds']:.1f}s), peak RSS {man['peak_rss_mb']:.0f} MiB -> {a.out}")
    if a.sparsity is not None:
        cal = stream_calibrate(a.out, a.sparsity, min_keep=settings.min_keep, mask_out=a.mask_out)
        print(f"global mask: kept {cal.kept:,} of {cal.total:,} (sparsity {cal.sparsity:.6f}, target "
              f"{cal.target}), threshold {cal.threshold:.6g} (alpha {cal.alpha:.4g}), peak RSS {peak_rss_mb():.0f} MiB")
        if a.mask_out:
            print(f"wrote {a.mask_out}")
    return 0
