"""YOPO as a data-free, one-shot *post-training* pruner vs magnitude, on models trained here and
loaded back from local checkpoints (no download), before and after a short fine-tune.

A. Vision: the digits CNN (``cnn_digits``, sklearn digits) is trained dense with yopo's training
   loop, saved as a ``.pth`` state dict and loaded back with ``yopo.models.pretrained`` (the loader
   behind ``yopo prune --checkpoint``). Each method scores the trained weights once (no data),
   masks at 50/70/90% (global and local mode), test accuracy is measured, then the masked model is
   fine-tuned for a few epochs (masks kept) and measured again.
B. Transformer: a tiny Llama-style causal LM (2 layers, hidden 64; every projection an
   ``nn.Linear``) is trained on a synthetic order-2 Markov language, saved with
   ``save_pretrained`` (safetensors) and loaded with ``from_pretrained(folder,
   local_files_only=True)``. Same protocol; the metric is validation cross-entropy (nats/token).
   The output head ``lm_head`` is left dense for both methods.

Besides 50/70/90% (global = one threshold, local = equal per-layer ratio), every method also
makes a 2:4 mask (``yopo.core.nm``; the digits CNN's first conv, one input channel, stays dense).

    python benchmarks/pretrained_prune.py           # ~10 min on 2 shared cores
    python benchmarks/pretrained_prune.py --quick   # smoke run
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, env  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import yopo  # noqa: E402
from yopo.core.io import write_json  # noqa: E402
from yopo.core.masks import enforce_after_step  # noqa: E402
from yopo.core.nm import nm_masks  # noqa: E402
from yopo.experiment.data import load_data  # noqa: E402
from yopo.experiment.train import TrainConfig, evaluate, train  # noqa: E402
from yopo.models import build  # noqa: E402
from yopo.models.pretrained import from_hf_folder, load_pretrained  # noqa: E402

METHODS = [("yopo", "global"), ("yopo", "local"), ("magnitude", "global"), ("magnitude", "local")]


def masks_for(model, method, mode, sparsity, seed, iters, exclude=()):
    """Masks at ``sparsity`` (a float) or, with mode="nm", at the N:M pattern ``sparsity`` ("2:4";
    layers whose input dimension M does not divide stay dense)."""
    opts = {"iters": iters} if method == "yopo" else {}
    scores = yopo.score(model, method, seed=seed, exclude=exclude, **opts)
    if mode == "nm":
        return nm_masks(scores, sparsity, indivisible="dense")
    return yopo.calibrate(scores, sparsity, mode=mode)


def settings(a):
    """(method, mode, sparsity or pattern) of every pruned run."""
    out = [(m, mode, s) for m, mode in METHODS for s in a.sparsities]
    return out + [(m, "nm", p) for m in ("yopo", "magnitude") for p in a.patterns]


def vision(a, out_dir: Path) -> list[dict]:
    rows = []
    for seed in a.seeds:
        data = load_data("digits", batch_size=64, seed=seed)
        cfg = TrainConfig(model="cnn_digits", dataset="digits", seed=seed, device="cpu", progress=False,
                          epochs=a.cnn_epochs, checkpoint=False)
        model = build("cnn_digits", 10, init="kaiming_normal", seed=seed)
        train(model, data, cfg)
        ckpt = out_dir / f"cnn_digits_seed{seed}.pth"
        torch.save(model.state_dict(), ckpt)
        dense_acc = evaluate(model, data.test)[1]
        rows.append({"task": "digits-cnn", "seed": seed, "method": "dense", "sparsity": 0.0, "before": dense_acc,
                     "after": dense_acc})
        ft = TrainConfig(model="cnn_digits", dataset="digits", seed=seed, device="cpu", progress=False,
                         epochs=a.finetune_epochs, lr=0.01, checkpoint=False)
        for method, mode, s in settings(a):
            m, _ = load_pretrained("cnn_digits", ckpt)  # what `yopo prune --checkpoint` loads
            yopo.apply_masks(m, masks_for(m, method, mode, s, seed, a.iters))
            before = evaluate(m, data.test)[1]
            train(m, data, ft)
            after = evaluate(m, data.test)[1]
            label = f"{method}-{s}" if mode == "nm" else f"{method}-{mode}"
            rows.append({"task": "digits-cnn", "seed": seed, "method": label, "sparsity": s,
                         "before": before, "after": after, "achieved_sparsity": yopo.sparsity(m)})
            print(f"digits seed {seed} {label:16s} s={s}  acc before {before:.2f}%  after "
                  f"fine-tune {after:.4f}", flush=True)
    return rows


def markov_batches(n_batches: int, batch: int, length: int, vocab: int, seed: int):
    """Token sequences of an order-2 Markov language: each (previous two tokens) has 4 successors
    with probabilities 0.55/0.25/0.15/0.05 (fixed by seed 1234, the same language for every split)."""
    lang = torch.Generator().manual_seed(1234)
    succ = torch.randint(0, vocab, (vocab, vocab, 4), generator=lang)
    probs = torch.tensor([0.55, 0.25, 0.15, 0.05])
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.empty(batch, length, dtype=torch.long)
        x[:, :2] = torch.randint(0, vocab, (batch, 2), generator=g)
        for t in range(2, length):
            pick = torch.multinomial(probs.expand(batch, 4), 1, generator=g).squeeze(1)
            x[:, t] = succ[x[:, t - 2], x[:, t - 1], pick]
        out.append(x)
    return out


def lm_loss(model, x):
    return F.cross_entropy(model(input_ids=x).logits[:, :-1].reshape(-1, model.config.vocab_size),
                           x[:, 1:].reshape(-1))


@torch.no_grad()
def lm_eval(model, batches) -> float:
    model.eval()
    return statistics.fmean(float(lm_loss(model, x)) for x in batches)


def lm_train(model, batches, lr, masked: bool):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    if masked:
        enforce_after_step(opt, model)
    for x in batches:
        loss = lm_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def transformer(a, out_dir: Path) -> list[dict]:
    import transformers

    transformers.utils.logging.disable_progress_bar()

    rows = []
    vocab, length = 64, 32
    val = markov_batches(8, 64, length, vocab, seed=999)
    for seed in a.seeds:
        torch.manual_seed(seed)
        cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=length,
                                       tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(cfg)
        lm_train(model, markov_batches(a.lm_steps, 32, length, vocab, seed=seed), 3e-3, masked=False)
        folder = out_dir / f"tiny_llama_seed{seed}"
        model.save_pretrained(folder)  # config.json + model.safetensors
        dense = lm_eval(model, val)
        rows.append({"task": "tiny-llama-markov", "seed": seed, "method": "dense", "sparsity": 0.0, "before": dense,
                     "after": dense})
        print(f"tiny-llama seed {seed} dense val loss {dense:.4f} (uniform: {torch.log(torch.tensor(vocab)):.4f})",
              flush=True)
        ft_batches = markov_batches(a.lm_finetune_steps, 32, length, vocab, seed=seed + 100)
        for method, mode, s in settings(a):
            m = from_hf_folder(folder)
            yopo.apply_masks(m, masks_for(m, method, mode, s, seed, a.iters, exclude=("lm_head",)))
            before = lm_eval(m, val)
            lm_train(m, ft_batches, 1e-3, masked=True)
            yopo.assert_pruned_zero(m)
            after = lm_eval(m, val)
            label = f"{method}-{s}" if mode == "nm" else f"{method}-{mode}"
            rows.append({"task": "tiny-llama-markov", "seed": seed, "method": label, "sparsity": s,
                         "before": before, "after": after, "achieved_sparsity": yopo.sparsity(m)})
            print(f"tiny-llama seed {seed} {label:16s} s={s}  val loss before {before:.4f}  after "
                  f"fine-tune {after:.4f}", flush=True)
    return rows


def summarize(rows):
    table = {}
    for r in rows:
        key = (r["task"], r["method"], r["sparsity"])
        table.setdefault(key, {"before": [], "after": []})
        table[key]["before"].append(r["before"])
        table[key]["after"].append(r["after"])
    out = []
    for (task, method, s), v in table.items():
        sd = (lambda x: statistics.stdev(x) if len(x) > 1 else 0.0)  # noqa: E731
        out.append({"task": task, "method": method, "sparsity": s, "n": len(v["before"]),
                    "before_mean": statistics.fmean(v["before"]), "before_std": sd(v["before"]),
                    "after_mean": statistics.fmean(v["after"]), "after_std": sd(v["after"])})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    ap.add_argument("--patterns", nargs="*", default=["2:4"], help="N:M patterns (layers M does not divide stay dense)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--cnn-epochs", type=int, default=15)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--lm-steps", type=int, default=1000)
    ap.add_argument("--lm-finetune-steps", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.sparsities, a.iters, a.cnn_epochs, a.finetune_epochs = [0], [0.9], 20, 3, 1
        a.lm_steps, a.lm_finetune_steps = 40, 5
    torch.set_num_threads(1)
    info = env()  # load average at the start
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = vision(a, Path(tmp)) + transformer(a, Path(tmp))
    summary = summarize(rows)
    print("\ntask | method | sparsity | before (mean +- std) | after fine-tune")
    for r in summary:
        print(f"{r['task']} | {r['method']} | {r['sparsity']} | {r['before_mean']:.4f} +- {r['before_std']:.4f} | "
              f"{r['after_mean']:.4f} +- {r['after_std']:.4f}")
    info["loadavg_at_end"] = list(__import__("os").getloadavg())
    path = Path(a.out) if a.out else RESULTS / f"pretrained_prune{'_quick' if a.quick else ''}.json"
    write_json(path, {"env": info, "settings": {k: v for k, v in vars(a).items() if k != "out"},
                      "summary": summary, "runs": rows, "wall_s": time.perf_counter() - t0})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
