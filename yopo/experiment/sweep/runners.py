"""What a sweep run executes: a runner is ``fn(settings: dict, masks: dict) -> dict`` with at least
``test_acc`` (percent). Builtins: ``train`` (:func:`train_runner`) and ``synthetic``
(:func:`synthetic_runner`); any other runner or scorer is named ``module:function``
(:func:`resolve`)."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from .spec import NON_IDENTITY, digest

RUNNERS = {"train": "yopo.experiment.sweep.runners:train_runner",
           "synthetic": "yopo.experiment.sweep.runners:synthetic_runner"}
SCORERS = {"default": "yopo.experiment.sweep.families:default_scorer"}


def resolve(name: str, builtins: dict) -> Callable:
    """A runner/scorer by builtin name or ``module:function``."""
    if name in builtins:
        name = builtins[name]
    mod, _, fn = name.partition(":")
    if not fn:
        raise ValueError(f"expected a builtin name {sorted(builtins)} or 'module:function'; got {name!r}")
    return getattr(importlib.import_module(mod), fn)


def train_config(settings: dict):
    """The ``yopo.experiment.train.TrainConfig`` of a run: its train settings (validated when the
    sweep config was read: TrainConfig fields and the runner's own keys), the model/dataset axes and
    ``seed = init_seed`` (the initialization the masks belong to)."""
    from ..train import TrainConfig
    from .spec import RunnerOptions

    runner_keys = {f.name for f in dataclasses.fields(RunnerOptions)}
    t = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings["train"].items() if k not in runner_keys}
    t.update(model=settings["model"], dataset=settings["dataset"],
             seed=int(settings.get("init_seed", settings["seed"])))
    t.setdefault("progress", False)
    return TrainConfig(**t)


def run_calibration(settings: dict, masks: dict):
    """The run's masks as a :class:`yopo.core.calibration.Calibration` carrying the calibration
    settings recorded for the run (layers its ``exclude`` left dense are not counted)."""
    from ...core.calibration import Calibration, CalibrationSettings, excluded_layers
    from ...core.config import from_mapping

    cal_settings = from_mapping(CalibrationSettings, settings["calibration"])
    dense = set()
    if cal_settings.exclude:
        dense = {n for n in excluded_layers(list(masks), cal_settings.exclude) if bool(masks[n].all())}
    cal = Calibration.from_masks(masks, dense)
    cal.settings = cal_settings
    return cal


def train_runner(settings: dict, masks: dict) -> dict:
    """Train one run with ``yopo.experiment.train.run(cfg, masks=...)`` (resumable from its out_dir).
    Accuracies come back in percent, as the sweep stores them."""
    from ..train import run

    threads = settings["train"].get("threads")
    if threads:  # e.g. 1 per worker on a shared machine (2 threads spin badly on busy cores)
        import torch

        torch.set_num_threads(int(threads))
    cfg = train_config(settings)
    res = run(cfg, method=settings["method"], sparsity=settings["sparsity"], masks=run_calibration(settings, masks),
              out_dir=settings.get("out_dir"), resume=True, progress=bool(cfg.progress))
    res = dict(res)
    # the sweep stores the diagnostics of its own calibration (families.run_masks: with its warnings)
    res.pop("calibration", None)
    if settings.get("out_dir"):  # the run is finished: its resume checkpoint is no longer needed
        from ..train.loop import CHECKPOINT

        with contextlib.suppress(OSError):
            (Path(settings["out_dir"]) / CHECKPOINT).unlink(missing_ok=True)
    if len(json.dumps(res.get("history", []), default=str)) > 50000:
        res.pop("history")
    return res


def synthetic_runner(settings: dict, masks: dict) -> dict:
    """A deterministic stand-in for training (for tests and dry runs): accuracy falls with the
    achieved sparsity, depends a little on the method, seed and variant. ``train.sleep`` seconds
    of sleep simulate work; ``YOPO_SYNTH_LOG`` (env) names a file that gets one line per call."""
    log = os.environ.get("YOPO_SYNTH_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"id": digest({k: v for k, v in settings.items() if k not in ("train", "sweep",
                                                                                              "init_seed")} |
                                             {"train": {k: v for k, v in settings["train"].items()
                                                        if k not in NON_IDENTITY}}),
                                "pid": os.getpid()}) + "\n")
    time.sleep(float(settings.get("train", {}).get("sleep", 0)))
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    s = 1 - kept / total
    bonus = {"yopo": 2.0, "magnitude": 0.5, "random": -1.0}.get(settings["method"], 0.0)
    penalty = {"none": 0.0, "shuffle": 1.5, "reinit": 0.5, "invert": 8.0}[settings.get("variant", "none")]
    noise = (int(digest([settings["seed"], settings.get("mask_seed"), settings["label"], settings["sparsity"],
                         settings.get("mask_dataset"), settings["dataset"]], 6), 16) % 1000) / 1000 - 0.5
    acc = 90.0 - 40.0 * s ** 6 + bonus - penalty + noise
    # a curve that converges to acc (the report's training-curves figure reads it)
    history = [{"epoch": e, "test_acc": acc * (1 - 0.5 ** e)} for e in range(1, 6)]
    return {"test_acc": acc, "test_loss": (100 - acc) / 50, "train_loss": (100 - acc) / 40, "epochs": 0,
            "history": history, "time_s": 0.0, "sparsity": s, "params": total, "params_kept": kept, "flops": None, "flops_kept": None}
