"""Sweeps: methods x sparsities x seeds x datasets x models (x sanity variants, x transfers).

Each run is identified by a hash of its settings and stored in a SQLite database (WAL mode, one
transaction per finished run), so an interrupted sweep resumes without repeating or losing runs:
only runs recorded ``done`` are skipped; runs that were in flight (or failed) are run again.

The point of the method is once-only saliency: a *family* (the saliency of one initialization,
:class:`yopo.Family`) is computed once per (model, seed, method settings[, scoring dataset]) and
cached in the sweep folder (``families/<key>.safetensors``, written atomically); every sparsity,
mode and variant of that family is obtained by re-thresholding (``Family.calibrate``) and the masks
are passed to the run function (``run(..., masks=...)``).

Sweep config (JSON or TOML)::

    name = "demo"
    out = "runs/demo"                    # sweep folder: results.sqlite + families/
    models = ["resnet20"]
    datasets = ["cifar10"]
    methods = ["yopo-G", "yopo-L", "random", "snip"]   # or tables: {label, method, mode, robust, opts}
    sparsities = [0.9, 0.98]
    seeds = [0, 1]
    variants = ["none"]                  # none | shuffle | reinit | invert (yopo.experiment.sanity)
    cross_seed = "none"                  # none | next | all: I^3 runs (mask of seed s on init s')
    cross_dataset = false                # DTI runs: mask family of every other dataset
    runner = "train"                     # train | synthetic | "module:function"
    [train]                              # run settings (yopo.experiment.train.TrainConfig fields)
    epochs = 2
    [dataset_settings.cifar10]           # per-dataset overrides
    num_classes = 10

Method shorthands: ``yopo-G`` = yopo/global, ``yopo-L`` = yopo/local, ``random`` = random/local
(within-layer random); any other registered name = that method, global calibration. A suffix
``-std`` selects mean/STD thresholds (e.g. ``yopo-G-std``).

A runner is ``fn(settings: dict, masks: dict) -> dict`` with at least ``test_acc`` (percent).
``settings`` holds the run's axes plus ``train`` (the merged train settings) and ``init_seed``
(the seed of the initialization the masks must be applied to).

Modules: ``spec`` (the config, its grid expansion into runs, run ids and family keys),
``families`` (the once-only saliency families and the masks of a run), ``runners`` (what a run
executes: training or the synthetic stand-in), ``execute`` (the sweep itself: phases, recording,
resumption, interruption), ``executors`` (where runs execute: in-process, a local process pool,
Ray, SLURM through submitit); results go to the SQLite store of ``yopo.experiment.store``.
"""
from ..store import ResultsDB
from .execute import SweepSummary, execute, run_sweep
from .families import (build_model, default_scorer, ensure_family, family_path, load_family, run_masks,
                       scoring_batch, transfer_masks)
from .runners import RUNNERS, SCORERS, resolve, synthetic_runner, train_config, train_runner
from .spec import (CROSS_SEED, NON_IDENTITY, SHORTHANDS, MethodSpec, Run, SweepSpec, digest, expand, family_key,
                   load_config, model_kwargs)

__all__ = ["CROSS_SEED", "NON_IDENTITY", "RUNNERS", "SCORERS", "SHORTHANDS", "MethodSpec", "ResultsDB", "Run",
           "SweepSpec", "SweepSummary", "build_model", "default_scorer", "digest", "ensure_family", "execute",
           "expand", "family_key", "family_path", "load_config", "load_family", "model_kwargs", "resolve",
           "run_masks", "run_sweep", "scoring_batch", "synthetic_runner", "train_config", "train_runner",
           "transfer_masks"]
