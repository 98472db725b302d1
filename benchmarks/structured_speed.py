"""Measured speed-up of channel-pruned models (physical removal, a smaller dense model) vs dense.

For each model (ResNet-20 and VGG-16 by default) and channel sparsity (50% and 75%): parameters,
forward FLOPs per sample (torch.utils.flop_counter), the time of one training step (forward,
backward, SGD step with momentum and weight decay) and of one inference batch (eval, no_grad).
The reference is the same dense model, same init, same batch, same optimizer and threads. All
variants of a model are timed in one process, in alternating rounds (dense block, 50% block, 75%
block, dense block, ...), so load drift on a shared machine hits all alike; a ratio is
median(dense) / median(pruned) over all steps of all rounds, of wall time (what a user waits) and
of process CPU time (the work done; on a loaded machine with ``--threads 1`` the fairer measure).

Channels are chosen by channel-level YOPO (``yopo.integrations.torch_pruning.prune_channels``);
the speed depends only on the kept widths, i.e. on the allocation (``--allocation``).

    python benchmarks/structured_speed.py            # full run (results/structured_speed.json)
    python benchmarks/structured_speed.py --quick    # smoke run: small batch, few steps
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, env  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from yopo.core.counting import module_flops  # noqa: E402
from yopo.core.io import write_json  # noqa: E402
from yopo.integrations.torch_pruning import prune_channels  # noqa: E402
from yopo.models import build  # noqa: E402

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, steps, device) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of each of ``steps`` calls. CPU time counts the work of
    all of this process's threads and not the time spent waiting for a core, so on a loaded
    machine with one thread it is the fairer measure of work; wall time is what a user waits."""
    wall, cpu = [], []
    for _ in range(steps):
        sync(device)
        t, c = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def train_block(model, opt, x, y, steps, device):
    model.train()

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _timed(step, steps, device)


def infer_block(model, x, steps, device):
    model.eval()

    @torch.no_grad()
    def fwd():
        model(x)
    return _timed(fwd, steps, device)


def flops_per_sample(model, shape, device) -> int:
    return module_flops(model, torch.zeros(2, *shape, device=device))[""] // 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "vgg16"])
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.75])
    ap.add_argument("--allocation", default="uniform", choices=["uniform", "global"])
    ap.add_argument("--aggregate", default=None, help="channel saliency aggregation (default: the library's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=4, help="alternating blocks per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the rounds")
    ap.add_argument("--iters", type=int, default=200, help="YOPO NMF iterations of the channel saliency")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 16, 2 steps x 2 rounds, 20 NMF iters")
    ap.add_argument("--out", default=None, help="JSON evidence (default: results/structured_speed[_quick].json)")
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.steps, a.rounds, a.warmup, a.iters = 16, 2, 2, 1, 20
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    info = env()
    info["cpu_flags"] = cpu_flags()
    default = "structured_speed_quick.json" if a.quick else "structured_speed.json"
    out_path = Path(a.out) if a.out else RESULTS / default
    print(f"{info['cpu']} ({', '.join(info['cpu_flags']) or 'no listed flags'}), torch {info['torch']}, "
          f"{info['threads']} threads, load {info['loadavg_at_start']}", flush=True)
    shape = (3, 32, 32)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, *shape, generator=g).to(device)
    y = torch.randint(0, 10, (a.batch,), generator=g).to(device)
    opts = {} if a.aggregate is None else {"aggregate": a.aggregate}
    results = []
    for name in a.models:
        dense = build(name, 10, init="kaiming_normal", seed=0).to(device)
        variants = {"dense": (dense, None)}
        for s in a.sparsities:
            small, plan = prune_channels(dense, torch.zeros(1, *shape, device=device), s, method="yopo",
                                         allocation=a.allocation, iters=a.iters, **opts)
            variants[f"{s:g}"] = (small, plan)
        timing = {}
        for key, (model, _) in variants.items():
            model = copy.deepcopy(model)  # own optimizer state per variant
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            train_block(model, opt, x, y, a.warmup, device)
            infer_block(model, x, a.warmup, device)
            timing[key] = {"model": model, "opt": opt, "train": [], "infer": [], "train_cpu": [], "infer_cpu": []}
        for r in range(a.rounds):
            for key, t in timing.items():
                wall, cpu = train_block(t["model"], t["opt"], x, y, a.steps, device)
                t["train"] += wall
                t["train_cpu"] += cpu
                wall, cpu = infer_block(t["model"], x, a.steps, device)
                t["infer"] += wall
                t["infer_cpu"] += cpu
        base = {k: statistics.median(timing["dense"][k]) for k in ("train", "infer", "train_cpu", "infer_cpu")}
        for key, (model, plan) in variants.items():
            t = timing[key]
            row = {"model": name, "variant": key, "channel_sparsity": 0.0 if plan is None else plan.sparsity,
                   "allocation": None if plan is None else a.allocation,
                   "aggregate": None if plan is None else plan.aggregate,
                   "params": sum(p.numel() for p in model.parameters()),
                   "flops_per_sample": flops_per_sample(model, shape, device),
                   "train_step_s": statistics.median(t["train"]), "infer_batch_s": statistics.median(t["infer"]),
                   "train_step_cpu_s": statistics.median(t["train_cpu"]),
                   "infer_batch_cpu_s": statistics.median(t["infer_cpu"]),
                   "train_steps_s": t["train"], "infer_batches_s": t["infer"],
                   "train_steps_cpu_s": t["train_cpu"], "infer_batches_cpu_s": t["infer_cpu"]}
            row["train_speedup"] = base["train"] / row["train_step_s"]
            row["infer_speedup"] = base["infer"] / row["infer_batch_s"]
            row["train_speedup_cpu"] = base["train_cpu"] / row["train_step_cpu_s"]
            row["infer_speedup_cpu"] = base["infer_cpu"] / row["infer_batch_cpu_s"]
            if plan is not None:
                row["layer_channels"] = {n: list(v) for n, v in plan.layer_channels().items()}
            results.append(row)
            print(f"{name:9s} {key:>6s}  params {row['params']:>9,d}  MFLOPs {row['flops_per_sample'] / 1e6:8.2f}  "
                  f"train {row['train_step_s'] * 1e3:8.1f} ms ({row['train_speedup']:.2f}x, cpu "
                  f"{row['train_speedup_cpu']:.2f}x)  infer {row['infer_batch_s'] * 1e3:8.1f} ms "
                  f"({row['infer_speedup']:.2f}x, cpu {row['infer_speedup_cpu']:.2f}x)", flush=True)
    info["loadavg_at_end"] = list(__import__("os").getloadavg())
    write_json(out_path, {"env": info, "settings": {k: v for k, v in vars(a).items() if k != "out"},
                          "results": results})
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
