"""GPU check: YOPO saliency on CUDA (ResNet-50, VGG-19, one LLaMA-7B-shaped MLP layer), CUDA/CPU
mask agreement, and masked mixed-precision training steps; one summary table at the end.

Designed to finish in well under 5 minutes on an H100/H200 (run through benchmarks/gpu_check.sh).
Without CUDA it prints the machine, says which parts it skips and why, and exits 0;
``--device cpu --quick`` runs every part on the CPU at toy sizes (to check the script itself).

What is measured, per part:
- saliency: ``yopo.score(model, "yopo")`` with the paper's settings (rank 7, T=200 MU steps,
  float32 storage; plus bfloat16 storage where the device computes it natively), on the device
  (synchronized wall time, best of 2 after a warm-up) and on the CPU (same call, all cores),
  and the agreement of the 90% YOPO-G masks (global, MAD) computed from both;
- LLaMA-7B layer: the (11008, 4096) ``mlp.up_proj`` weight drawn as HF initializes it
  (normal(0, 0.02)), same settings;
- training: torchvision ResNet-50 (1000 classes) with YOPO-G 90% masks, SGD with momentum,
  batch of random 224x224 images, autocast in bfloat16 (float16 + GradScaler where bf16 is not
  native); ms per step masked vs the same model dense, and a check that every pruned weight is
  still exactly 0 after the steps.

    bash benchmarks/gpu_check.sh                    # writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --quick
"""
from __future__ import annotations

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

import argparse
import os
import time

import torch

from _common import env, env_line, mask_agreement, model_weights, save
import yopo
from yopo.methods.yopo import hardware
from yopo.methods.yopo.saliency import YopoConfig, yopo_saliency


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, runs: int = 2):
    """(best seconds of ``runs`` after one warm-up call, last result)."""
    out = fn()
    sync(device)
    best = float("inf")
    for _ in range(runs):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def masks90(scores: dict) -> dict:
    return yopo.calibrate({k: v.float().cpu() for k, v in scores.items()}, 0.9, mode="global")


def saliency_case(name: str, weights: dict, device: torch.device, iters: int, with_cpu: bool) -> dict:
    cfg = YopoConfig(iters=iters)
    on_dev = {k: v.to(device) for k, v in weights.items()}
    row = {"case": name, "weights": sum(v.numel() for v in weights.values()), "iters": iters}
    row["device_s"], S_dev = timed(lambda: yopo_saliency(on_dev, cfg, device=device), device)
    m_dev = masks90(S_dev)
    if hardware.native_low_precision("bfloat16", device):
        row["device_bf16_s"], S_bf = timed(lambda: yopo_saliency(on_dev, YopoConfig(iters=iters, storage_dtype="bfloat16"),
                                                                 device=device), device)
        row["agreement_bf16_vs_float32"] = mask_agreement(masks90(S_bf), m_dev)
    if with_cpu:
        cpu = torch.device("cpu")
        row["cpu_s"], S_cpu = timed(lambda: yopo_saliency(weights, cfg, device=cpu), cpu, runs=1)
        row["agreement_device_vs_cpu"] = mask_agreement(m_dev, masks90(S_cpu))
        row["max_abs_score_diff_device_vs_cpu"] = max(float((S_dev[k].cpu() - S_cpu[k]).abs().max()) for k in S_cpu)
    return row


def training_case(device: torch.device, steps: int, batch: int, size: int, arch: str) -> dict:
    import torchvision

    torch.manual_seed(0)
    model = (torchvision.models.resnet50() if arch == "resnet50" else torchvision.models.resnet18()).to(device)
    dense = torchvision.models.resnet50() if arch == "resnet50" else torchvision.models.resnet18()
    dense.load_state_dict(model.state_dict())
    dense.to(device)
    scores = yopo.score(model, "yopo", seed=0, device=device, iters=200 if steps > 5 else 5)
    masks = yopo.calibrate({k: v.cpu() for k, v in scores.items()}, 0.9, mode="global")
    yopo.apply_masks(model, masks)
    bf16 = hardware.native_low_precision("bfloat16", device)
    amp_dtype = torch.bfloat16 if bf16 else torch.float16
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 1000, (batch,), generator=g).to(device)
    out = {"arch": arch, "batch": batch, "image_size": size, "steps": steps, "amp_dtype": str(amp_dtype)}
    for label, net in (("masked", model), ("dense", dense)):
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        if label == "masked":
            yopo.enforce_after_step(opt, net)
        scaler = torch.amp.GradScaler(device.type, enabled=not bf16)
        net.train()

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            return loss

        for _ in range(3):  # warm-up (cudnn autotune, allocator)
            step()
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync(device)
        out[f"{label}_ms_per_step"] = (time.perf_counter() - t) / steps * 1e3
        out[f"{label}_final_loss"] = float(loss.detach())
    yopo.assert_pruned_zero(model)  # raises if any pruned weight moved
    out["pruned_weights_exactly_zero"] = True
    out["sparsity"] = yopo.sparsity(model)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu (a dry run of the script)")
    ap.add_argument("--quick", action="store_true", help="toy sizes (checks the script; writes *_draft.json)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    info = env()
    print(env_line(info))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available here")
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_capability=list(torch.cuda.get_device_capability(device)),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        print(f"# GPU: {props.name}, capability {info['gpu_capability']}, {info['gpu_memory_gib']} GiB, "
              f"CUDA {torch.version.cuda}; bf16 native: {hardware.native_low_precision('bfloat16', device)}")
    elif args.device is None:
        print("CUDA is not available on this machine: skipping the CUDA saliency timings, the CUDA/CPU mask "
              "agreement and the masked AMP training steps (run `python benchmarks/gpu_check.py --device cpu "
              "--quick` to exercise the script on the CPU).")
        print("summary: nothing measured (no CUDA device)")
        return
    quick = args.quick
    iters = 5 if quick else 200
    rows = []
    models = ["resnet20"] if quick else ["resnet50", "vgg19"]
    for name in models:
        rows.append(saliency_case(name, model_weights(name), device, iters, with_cpu=True))
        print(f"saliency {name}: {rows[-1]}", flush=True)
    g = torch.Generator().manual_seed(0)
    shape = (688, 256) if quick else (11008, 4096)  # LLaMA-7B mlp.up_proj: (intermediate, hidden)
    llama = {"model.layers.0.mlp.up_proj.weight": torch.randn(*shape, generator=g) * 0.02}
    rows.append(saliency_case(f"llama-7b up_proj {shape[0]}x{shape[1]}", llama, device, iters, with_cpu=True))
    print(f"saliency llama layer: {rows[-1]}", flush=True)
    train = training_case(device, steps=2 if quick else 20, batch=4 if quick else 64, size=64 if quick else 224,
                          arch="resnet18" if quick else "resnet50")
    print(f"training: {train}", flush=True)
    total = time.perf_counter() - t_start

    where = info.get("gpu", "cpu")
    print(f"\nSummary ({where}; CPU side: {info['cpu']}, {info['threads']} threads; T={iters}; total {total:.0f} s)")
    print(f"| case | weights | {device.type} float32 s | {device.type} bf16 s | CPU s | CPU/{device.type} | "
          f"mask agreement {device.type}/CPU at 90% | bf16/float32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        bf = f"{r['device_bf16_s']:.3f}" if "device_bf16_s" in r else "n/a"
        agr_bf = f"{r['agreement_bf16_vs_float32']:.4f}" if "agreement_bf16_vs_float32" in r else "n/a"
        print(f"| {r['case']} | {r['weights'] / 1e6:.1f}M | {r['device_s']:.3f} | {bf} | {r['cpu_s']:.2f} | "
              f"{r['cpu_s'] / r['device_s']:.1f}x | {r['agreement_device_vs_cpu']:.6f} | {agr_bf} |")
    print(f"| training {train['arch']} bs{train['batch']} {train['amp_dtype']} | masked {train['masked_ms_per_step']:.1f}"
          f" ms/step | dense {train['dense_ms_per_step']:.1f} ms/step | ratio "
          f"{train['masked_ms_per_step'] / train['dense_ms_per_step']:.3f} | pruned weights exactly 0: "
          f"{train['pruned_weights_exactly_zero']} | sparsity {train['sparsity']:.4f} | | |")
    info["loadavg_at_end"] = os.getloadavg()
    p = save("gpu_check.json", {"env": info, "device": str(device), "quick": quick, "total_s": total,
                                "saliency": rows, "training": train}, draft=quick or device.type != "cuda")
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
