"""``yopo hf``: YOPO saliency of a Hugging Face transformers config at initialization, streamed
layer by layer to score shards (no weights are downloaded or held in memory at once), then a
streaming global calibration."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.config import add_dataclass_args, from_args, opt
from ..core.validate import check_int, check_sparsity
from ..methods.yopo.saliency import YopoConfig


@dataclass(frozen=True)
class HfArgs:
    hf_config: str = opt("gpt2", "config preset built in code: tiny-gpt2, gpt2, gpt2-medium, gpt2-large, "
                         "gpt2-xl, tiny-llama, llama-7b")
    out: str = opt("yopo_hf_scores", "folder for the score shards and manifest.json")
    seed: int = opt(0, "seed of the per-layer init and of the NMF")
    score_dtype: str = opt("float16", "dtype of the stored scores", ("float16", "bfloat16"))
    shard_mb: float = opt(1024.0, "target shard size in MiB")
    include_lm_head: bool = opt(False, "also score the LM head (tied to the embedding in GPT-2)")
    max_layers: int | None = opt(None, "stop after this many layers (timing runs)")
    resume: bool = opt(True, "continue an interrupted run in --out (same settings) after its last shard")
    sparsity: float | None = opt(0.9, "then calibrate YOPO-G masks at this sparsity (none: skip)")
    min_keep: int = opt(1, "entries kept in every output row")
    mask_out: str | None = opt(None, "write the bit-packed masks here")


def add_parser(sub, name):
    p = sub.add_parser(name, help="stream YOPO saliency of a transformers config (no download) to disk",
                       description="Enumerate the linear layers of a transformers model built from a config "
                       "(on the meta device), materialize each weight from a seeded init, score it, write the "
                       "scores as shards, then calibrate a global mask by streaming over the shards.")
    add_dataclass_args(p, HfArgs)
    add_dataclass_args(p, YopoConfig, group="YOPO saliency")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..integrations.hf_stream import default_threads_env
    default_threads_env()
    from ..core.progress import get_logger
    from ..integrations.hf_stream import hf_config, peak_rss_mb, stream_calibrate, stream_saliency

    a = from_args(HfArgs, args)
    cfg = from_args(YopoConfig, args).validate()
    if a.sparsity is not None:  # fail now, not after a long scoring pass
        check_sparsity(a.sparsity)
    check_int("min_keep", a.min_keep, 0)
    config = hf_config(a.hf_config)
    man = stream_saliency(config, cfg, a.out, seed=a.seed, score_dtype=a.score_dtype, shard_mb=a.shard_mb,
                          include_lm_head=a.include_lm_head, max_layers=a.max_layers, resume=a.resume,
                          log=get_logger("hf").info)  # stderr lines that keep the progress bar whole
    print(f"scored {len(man['layers'])} layers, {man['numel']:,} weights in {man['seconds']:.1f}s "
          f"(NMF {man['nmf_seconds']:.1f}s), peak RSS {man['peak_rss_mb']:.0f} MiB -> {a.out}")
    if a.sparsity is not None:
        cal = stream_calibrate(a.out, a.sparsity, min_keep=a.min_keep, mask_out=a.mask_out)
        print(f"global mask: kept {cal.kept:,} of {cal.total:,} (sparsity {cal.sparsity:.6f}, target "
              f"{cal.target}), threshold {cal.threshold:.6g} (alpha {cal.alpha:.4g}), peak RSS {peak_rss_mb():.0f} MiB")
        if a.mask_out:
            print(f"wrote {a.mask_out}")
    return 0
