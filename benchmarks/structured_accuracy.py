"""Small accuracy comparison of channel-level pruning at initialization, on a fast offline task.

Every run: seed -> build the model (kaiming-normal init) -> choose channels at init -> remove them
physically (Torch-Pruning) -> train the smaller dense model with yopo's own training loop
(``yopo.experiment.train.train``, the ``quick`` recipe) -> test accuracy. Compared at the same
channel sparsity:

* ``yopo/<aggregate>/<allocation>``: channel-level YOPO (NMF residual aggregated per filter);
* ``l1norm/uniform``: L1-norm filter pruning (Li et al. 2017: sum |W| per filter, same fraction
  per layer); ``random/uniform``: random channels;
* ``unstructured/yopo-G`` and ``unstructured/magnitude``: unstructured masks (global mode) with
  the *same total parameter count* as ``yopo/<default>/uniform``;
* ``dense``.

    python benchmarks/structured_accuracy.py                  # MNIST-1D Conv1d net, 3 seeds (~10 min on 2 cores)
    python benchmarks/structured_accuracy.py --quick          # smoke run
    python benchmarks/structured_accuracy.py --posttrain      # channel pruning of trained models + fine-tune
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, env  # noqa: E402

import torch  # noqa: E402

import yopo  # noqa: E402
from yopo.core.calibration import n_keep  # noqa: E402
from yopo.core.io import write_json  # noqa: E402
from yopo.core.structured import DEFAULT_AGGREGATE  # noqa: E402
from yopo.experiment.data import load_data  # noqa: E402
from yopo.experiment.train import TrainConfig, evaluate, train  # noqa: E402
from yopo.integrations.torch_pruning import prune_channels  # noqa: E402
from yopo.models import build, input_kwargs  # noqa: E402


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def unstructured_at(model, method: str, params_target: int, seed: int, iters: int):
    """Masks of ``method`` (global mode, min_keep 1) keeping ``params_target`` parameters in total
    (kept prunable weights + every non-prunable parameter)."""
    layers = yopo.prunable_layers(model)
    prunable = sum(l.numel for l in layers)
    fixed = n_params(model) - prunable
    k = params_target - fixed
    opts = {"iters": iters} if method == "yopo" else {}
    scores = yopo.score(model, method, seed=seed, **opts)
    # the sparsity whose exact budget is k kept weights
    s = 1 - k / prunable
    while n_keep(s, prunable) > k:
        s = float(torch.nextafter(torch.tensor(s, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)))
    while n_keep(s, prunable) < k:
        s = float(torch.nextafter(torch.tensor(s, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)))
    masks = yopo.calibrate(scores, s, mode="global")
    return masks


def posttrain(a, model_name, extra) -> list[dict]:
    """Channel pruning of a *trained* model: which channels go matters here (at initialization the
    surviving filters of any choice are i.i.d. random). Train dense, prune each variant at the same
    uniform allocation, test, fine-tune ``a.finetune_epochs`` epochs, test again."""
    runs = []
    for seed in a.seeds:
        data = load_data(a.dataset, batch_size=64, seed=seed)
        kw = dict(extra, **input_kwargs(model_name, data.input_shape))
        example = torch.zeros(1, *data.input_shape)
        cfg = TrainConfig(model=model_name, dataset=a.dataset, seed=seed, device="cpu", progress=False,
                          epochs=a.epochs, checkpoint=False)
        ft = TrainConfig(model=model_name, dataset=a.dataset, seed=seed, device="cpu", progress=False,
                         epochs=a.finetune_epochs, lr=0.01, checkpoint=False)
        dense = build(model_name, data.num_classes, init="kaiming_normal", seed=seed, **kw)
        torch.manual_seed(seed)
        train(dense, data, cfg)
        dense_acc = evaluate(dense, data.test)[1]
        runs.append({"label": "dense", "seed": seed, "channel_sparsity": 0.0, "before": dense_acc,
                     "after": dense_acc, "params": n_params(dense)})
        for s in a.sparsities:
            variants = [(f"yopo/{agg}/uniform", "yopo", agg) for agg in a.aggregates]
            variants += [("l1norm/uniform", "magnitude", "l1"), ("random/uniform", "random", "l1")]
            for label, method, agg in variants:
                opts = {"iters": a.iters} if method == "yopo" else {}
                small, plan = prune_channels(dense, example, s, method=method, aggregate=agg, allocation="uniform",
                                             seed=seed, **opts)
                before = evaluate(small, data.test)[1]
                torch.manual_seed(seed)
                train(small, data, ft)
                after = evaluate(small, data.test)[1]
                runs.append({"label": label, "seed": seed, "channel_sparsity": s, "before": before, "after": after,
                             "params": n_params(small)})
                print(f"posttrain seed {seed} s={s:<5g} {label:24s} acc before {before:.4f}  after fine-tune "
                      f"{after:.4f}", flush=True)
    return runs


def summarize_posttrain(runs) -> dict:
    out = {}
    for r in runs:
        d = out.setdefault(f"{r['channel_sparsity']:g}", {}).setdefault(r["label"], {"before": [], "after": []})
        d["before"].append(r["before"])
        d["after"].append(r["after"])
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)  # noqa: E731
    return {s: {lab: {k + "_mean": statistics.fmean(v[k]) for k in v} | {k + "_std": sd(v[k]) for k in v}
                | {"n": len(v["before"])} for lab, v in d.items()} for s, d in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits"])
    ap.add_argument("--model", default=None, help="default: conv1d_mnist1d (channels 64) / cnn_digits (width 32)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.75])
    ap.add_argument("--epochs", type=int, default=None, help="default: the quick recipe's (15)")
    ap.add_argument("--iters", type=int, default=200, help="YOPO NMF iterations")
    ap.add_argument("--aggregates", nargs="+", default=["l1", "l2", "max", "relative"])
    ap.add_argument("--posttrain", action="store_true", help="prune trained models instead (then fine-tune)")
    ap.add_argument("--finetune-epochs", type=int, default=3, help="--posttrain: fine-tuning epochs")
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 sparsity, 2 epochs, 20 NMF iterations")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.sparsities, a.epochs, a.iters, a.aggregates = [0], [0.5], 2, 20, [DEFAULT_AGGREGATE]
    torch.set_num_threads(1)  # tiny models: threads only add synchronization on a shared CPU
    model_name = a.model or {"mnist1d": "conv1d_mnist1d", "digits": "cnn_digits"}[a.dataset]
    extra = {"conv1d_mnist1d": {"channels": 64}, "cnn_digits": {"width": 32}}.get(model_name, {})
    out_path = Path(a.out) if a.out else RESULTS / f"structured_accuracy_{a.dataset}{'_quick' if a.quick else ''}.json"
    info = env()
    t_start = time.perf_counter()
    if a.posttrain:
        runs = posttrain(a, model_name, extra)
        table = summarize_posttrain(runs)
        print("\nchannel sparsity | variant | acc before -> after fine-tune (mean +- std)")
        for s, d in table.items():
            for lab, st in d.items():
                print(f"{s:>5s} | {lab:24s} | {st['before_mean']:.2f} +- {st['before_std']:.2f} -> "
                      f"{st['after_mean']:.2f} +- {st['after_std']:.2f} ({st['n']})")
        info["loadavg_at_end"] = list(__import__("os").getloadavg())
        path = out_path.with_name(out_path.stem + "_posttrain.json") if not a.out else out_path
        write_json(path, {"env": info, "settings": {**{k: v for k, v in vars(a).items() if k != "out"},
                                                    "model": model_name, "model_kwargs": extra},
                          "summary": table, "runs": runs, "wall_s": time.perf_counter() - t_start})
        print(f"wrote {path}")
        return 0
    runs = []
    for seed in a.seeds:
        data = load_data(a.dataset, batch_size=64, seed=seed)
        kw = dict(extra, **input_kwargs(model_name, data.input_shape))
        example = torch.zeros(1, *data.input_shape)
        cfg = TrainConfig(model=model_name, dataset=a.dataset, seed=seed, device="cpu", progress=False,
                          epochs=a.epochs, checkpoint=False)

        def fresh():
            return build(model_name, data.num_classes, init="kaiming_normal", seed=seed, **kw)

        def fit(label, model, sparsity, extra_info=None):
            t = time.perf_counter()
            torch.manual_seed(seed)
            res = train(model, data, cfg)
            row = {"label": label, "seed": seed, "channel_sparsity": sparsity, "test_acc": res["test_acc"],
                   "params": n_params(model) if not yopo.get_masks(model) else
                   n_params(model) - sum(int((~m).sum()) for m in yopo.get_masks(model).values()),
                   "train_s": time.perf_counter() - t, **(extra_info or {})}
            runs.append(row)
            print(f"seed {seed} s={sparsity:<5g} {label:28s} acc {row['test_acc']:.2f}%  params {row['params']:>7d}",
                  flush=True)
            return row

        fit("dense", fresh(), 0.0)
        for s in a.sparsities:
            variants = [(f"yopo/{agg}/{alloc}", "yopo", agg, alloc) for agg in a.aggregates
                        for alloc in ("uniform", "global")]
            variants += [("l1norm/uniform", "magnitude", "l1", "uniform"),
                         ("random/uniform", "random", "l1", "uniform")]
            ref_params = None
            for label, method, agg, alloc in variants:
                opts = {"iters": a.iters} if method == "yopo" else {}
                small, plan = prune_channels(fresh(), example, s, method=method, aggregate=agg, allocation=alloc,
                                             seed=seed, inplace=True, **opts)
                row = fit(label, small, s, {"kept_channels": plan.kept, "total_channels": plan.total,
                                            "layer_channels": {n: list(v) for n, v in plan.layer_channels().items()}})
                if label == f"yopo/{DEFAULT_AGGREGATE}/uniform":
                    ref_params = row["params"]
            if ref_params is None:
                continue
            for method, label in (("yopo", "unstructured/yopo-G"), ("magnitude", "unstructured/magnitude")):
                model = fresh()
                yopo.apply_masks(model, unstructured_at(model, method, ref_params, seed, a.iters))
                fit(label, model, s, {"weight_sparsity": yopo.sparsity(model)})
    summary = {}
    for r in runs:
        summary.setdefault(f"{r['channel_sparsity']:g}", {}).setdefault(r["label"], []).append(r["test_acc"])
    table = {s: {lab: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
                 for lab, v in d.items()} for s, d in summary.items()}
    print("\nchannel sparsity | variant | test acc mean +- std (n)")
    for s, d in table.items():
        for lab, st in d.items():
            print(f"{s:>5s} | {lab:28s} | {st['mean']:.2f} +- {st['std']:.2f} ({st['n']})")
    info["loadavg_at_end"] = list(__import__("os").getloadavg())
    write_json(out_path, {"env": info, "settings": {**{k: v for k, v in vars(a).items() if k != "out"},
                                                    "model": model_name, "model_kwargs": extra},
                          "summary": table, "runs": runs, "wall_s": time.perf_counter() - t_start})
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
