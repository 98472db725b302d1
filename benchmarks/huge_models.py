"""Huge-model saliency: GPT-2 sizes and a LLaMA-7B-shaped config, streamed layer by layer.

Each case runs in its own subprocess (so the peak RSS, from resource.getrusage, is that case's);
weights come from the per-layer seeded init (no download), scores go to float16 shards on disk,
then a streaming global calibration at 90% sparsity reads them back. Prints one line per case and
writes benchmarks/results/huge_models.json (and huge_<case>.json per case).

    python benchmarks/huge_models.py                 # the default cases below
    python benchmarks/huge_models.py --case llama-7b --iters 5
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP pool

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# (preset, iters, max_layers): full runs, plus a timing run of LLaMA-7B's first block at T=200
CASES = [("gpt2", 200, None), ("gpt2-medium", 200, None), ("gpt2-xl", 5, None),
         ("llama-7b", 200, 7), ("llama-7b", 5, None)]
# the table also extrapolates full LLaMA-7B at T=200 from the first block's seconds per weight


def run_case(preset: str, iters: int, max_layers, keep: bool, storage: str, workdir: str | None) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from yopo.integrations.hf_stream import hf_config, linear_specs, peak_rss_mb, stream_calibrate, stream_saliency
    from yopo.methods.yopo.saliency import YopoConfig

    rss0 = peak_rss_mb()
    out = Path(workdir or tempfile.mkdtemp(prefix=f"yopo_{preset}_", dir=os.environ.get("YOPO_SCRATCH")))
    config = hf_config(preset)
    specs = linear_specs(config)
    all_numel = sum(s.numel for s in specs)
    cfg = YopoConfig(iters=iters, storage_dtype=storage)
    t = time.perf_counter()
    man = stream_saliency(config, cfg, out, seed=0, max_layers=max_layers)
    t_score = time.perf_counter() - t
    rss_score = peak_rss_mb()
    t = time.perf_counter()
    cal = stream_calibrate(out, 0.9)
    t_cal = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "case": preset, "iters": iters, "rank": cfg.rank, "storage_dtype": storage, "layers": len(man["layers"]),
        "layers_in_model": len(specs), "weights": man["numel"], "weights_in_model": all_numel,
        "model_fp32_gb": all_numel * 4 / 1e9, "score_seconds": t_score, "nmf_seconds": man["nmf_seconds"],
        "calibrate_seconds": t_cal, "peak_rss_mb_after_import": rss0, "peak_rss_mb_scoring": rss_score,
        "peak_rss_mb": peak_rss_mb(), "scores_on_disk_gb": disk / 1e9, "kept": cal.kept, "total": cal.total,
        "sparsity": cal.sparsity, "threads": torch.get_num_threads(),
        "seconds_per_gweight": t_score / (man["numel"] / 1e9),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", help="one preset (runs in this process)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--max-layers", type=int, default=None)
    ap.add_argument("--storage-dtype", default="float32")
    ap.add_argument("--keep", action="store_true", help="keep the score shards")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--force", action="store_true", help="re-run cases that already have a result file")
    args = ap.parse_args()
    if args.case:
        res = run_case(args.case, args.iters, args.max_layers, args.keep, args.storage_dtype, args.workdir)
        tag = f"{args.case}_T{args.iters}" + (f"_L{args.max_layers}" if args.max_layers else "") + (
            "" if args.storage_dtype == "float32" else f"_{args.storage_dtype}")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"huge_{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res))
        return
    rows = []
    for preset, iters, ml in CASES:
        tag = f"{preset}_T{iters}" + (f"_L{ml}" if ml else "")
        done = RESULTS / f"huge_{tag}.json"
        if done.exists() and not args.force:  # a case already measured (each case is one run)
            rows.append(json.loads(done.read_text()))
        else:
            cmd = [sys.executable, __file__, "--case", preset, "--iters", str(iters)]
            if ml:
                cmd += ["--max-layers", str(ml)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                print(p.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{preset:12s} T={iters:3d} layers {r['layers']}/{r['layers_in_model']} weights {r['weights'] / 1e6:8.1f}M "
              f"score {r['score_seconds']:8.1f}s calib {r['calibrate_seconds']:6.1f}s peak RSS {r['peak_rss_mb']:7.0f} MiB "
              f"(model fp32 {r['model_fp32_gb']:.1f} GB)", flush=True)
    block = next((r for r in rows if r["case"] == "llama-7b" and r["iters"] == 200), None)
    full5 = next((r for r in rows if r["case"] == "llama-7b" and r["iters"] == 5 and r["layers"] == r["layers_in_model"]), None)
    extra = {}
    if block:
        extra["llama7b_T200_extrapolated_score_seconds"] = block["score_seconds"] / block["weights"] * block["weights_in_model"]
        print(f"LLaMA-7B at T=200, extrapolated from the first block ({block['weights'] / 1e6:.0f}M weights, "
              f"{block['score_seconds']:.0f}s): {extra['llama7b_T200_extrapolated_score_seconds'] / 3600:.2f} h")
    if full5:
        extra["llama7b_T5_measured"] = {k: full5[k] for k in ("score_seconds", "calibrate_seconds", "peak_rss_mb")}
    env = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "runs": 1, **extra}
    (RESULTS / "huge_models.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
