"""Does the default `yopo prune` (method yopo, the recommended preset) empty a layer or a class row?

Issue 10, item 5: "no layer emptied and no empty class row at any sparsity <= 99% with the default
settings on every model in `yopo models`". For every model and sparsity this runs the real command
a user runs, `yopo prune --model M --sparsity S --out TMP` (fresh process, default everything),
reads its per-layer table and its warnings, and records per (model, sparsity):

- emptied: layers that keep no weight;
- stranded: layers that keep weights but none on an input-output path (a layer emptied in effect);
- empty_class_rows: output rows of the last layer with no weight (classes that can never win);
- stranded_weights: kept weights on no input-output path (effective minus nominal sparsity);
- seconds: wall time of the command (machine stated in the saved evidence);
- commit: the code it ran (rows are merged across runs; a default changed since makes a row stale).

Usage: python benchmarks/collapse_check.py [--models resnet20 vgg11 ...] [--sparsities 0.9 0.99]
Saves benchmarks/results/collapse_check.json (merged with earlier runs, so it can be resumed model
by model) and prints a table. Exit code 1 if any default mask collapses.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "collapse_check.json"
ROW = re.compile(r"^(\S+)\s+(\d+(?:x\d+)*)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)/(\d+)\s+(\d+)/(\d+)\s+(\d+)\s*$")


def all_models() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "yopo", "models"], capture_output=True, text=True, check=True)
    return [l.split()[0] for l in out.stdout.splitlines() if l.strip() and not l.startswith(" ")]


def commit() -> str | None:
    """The code a row was measured with (rows are merged across runs; a default that changed since
    makes older rows stale)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "yopo"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def check(model: str, sparsity: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "yopo", "prune", "--model", model, "--sparsity", str(sparsity),
               "--out", os.path.join(tmp, "family.safetensors")]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if p.returncode != 0:
        return {"model": model, "sparsity": sparsity, "error": (p.stderr.strip().splitlines() or ["?"])[-1],
                "seconds": seconds}
    rows = [m.groups() for m in map(ROW.match, p.stdout.splitlines()) if m]
    if not rows:
        return {"model": model, "sparsity": sparsity, "error": "no layer table in the output", "seconds": seconds}
    emptied = [r[0] for r in rows if int(r[2]) == 0]
    last = rows[-1]
    stranded_layers = re.findall(r"keep weights but none on an input-output path: ([^;]+);", p.stderr)
    stranded_w = re.search(r"(\d+) of \d+ kept weights lie on no input-output path", p.stderr)
    total = re.search(r"effective sparsity ([\d.]+)", p.stdout)
    return {"model": model, "sparsity": sparsity, "layers": len(rows), "emptied": emptied,
            "stranded": [s.strip() for s in ",".join(stranded_layers).split(",") if s.strip()],
            "last_layer": last[0], "empty_class_rows": int(last[5]), "classes": int(last[6]),
            "stranded_weights": int(stranded_w.group(1)) if stranded_w else 0,
            "effective_sparsity": float(total.group(1)) if total else None, "seconds": round(seconds, 1)}


def _load() -> dict:
    """The saved rows, keyed by (model, sparsity)."""
    saved = json.loads(OUT.read_text()) if OUT.exists() else {"results": []}
    return {(r["model"], r["sparsity"]): r for r in saved["results"]}


def _save(row: dict) -> None:
    """Merge ``row`` into the file as it is now (another run may have added rows since this one
    started) and write it atomically: a killed run leaves the previous file whole."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows = _load()
    rows[(row["model"], row["sparsity"])] = row
    tmp = OUT.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"machine": env(), "command": "yopo prune --model M --sparsity S "
                               "(defaults: recommended preset)", "results": list(rows.values())}, indent=1))
    os.replace(tmp, OUT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="default: every model of `yopo models`")
    ap.add_argument("--sparsities", nargs="*", type=float, default=[0.9, 0.95, 0.98, 0.99])
    a = ap.parse_args()
    models = a.models or all_models()
    results = _load()
    for model in models:
        for s in a.sparsities:
            code = commit()  # per row: the code can change between rows of a long run
            r = {**check(model, s), "commit": code}
            results[(model, s)] = r
            bad = r.get("error") or r["emptied"] or r["stranded"] or r["empty_class_rows"]
            print(f"{model:18s} {s:.2f}  " + (f"ERROR {r['error']}" if r.get("error") else
                  f"emptied {len(r['emptied'])}  stranded layers {len(r['stranded'])}  empty class rows "
                  f"{r['empty_class_rows']}/{r['classes']}  stranded weights {r['stranded_weights']}")
                  + f"  {r['seconds']:.0f}s" + ("  <-- COLLAPSE" if bad else ""), flush=True)
            _save(r)
    failed = [r for r in results.values() if r.get("error") or r["emptied"] or r["stranded"] or r["empty_class_rows"]]
    print(f"{len(results)} (model, sparsity) pairs, {len(failed)} with a collapse or an error")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
