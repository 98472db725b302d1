"""Sweeps: methods x sparsities x seeds x datasets x models (x sanity variants, x transfers).

Each run is identified by a hash of its settings and stored in a SQLite database (WAL mode, one
transaction per finished run), so an interrupted sweep resumes without repeating or losing runs:
only runs recorded ``done`` are skipped; runs that were in flight (or failed) are run again.

The point of the method is once-only saliency: a *family* (the saliency of one initialization,
:class:`yopo.Family`) is computed once per (model, seed, method settings[, scoring dataset]) and
cached in the sweep folder (``families/<key>.safetensors``, written atomically); every sparsity,
mode and variant of that family is obtained by re-thresholding (``Family.calibrate``) and the masks
are passed to the run function (``run(..., masks=...)``).

Sweep config (JSON or TOML); every table is read into the dataclass that declares it (unknown keys
and bad values are one-line errors), with the same key names as the CLI flags and the Python API::

    extends = "base.toml"                # optional: read that config first, lay this one over it
    name = "demo"                        # (tables merged key by key, lists and values replaced)
    out = "runs/demo"                    # sweep folder: results.sqlite + families/
    models = ["resnet20"]
    datasets = ["cifar10"]
    methods = ["yopo-G", "yopo-L", "random", "snip"]   # labels, or tables (below)
    sparsities = [0.9, 0.98]
    seeds = [0, 1]
    variants = ["none"]                  # none | shuffle | reinit | invert (yopo.experiment.sanity)
    cross_seed = "none"                  # none | next | all: I^3 runs (mask of seed s on init s')
    cross_dataset = false                # DTI runs: mask family of every other dataset
    runner = "train"                     # train | synthetic | "module:function"
    [calibration]                        # CalibrationSettings defaults of every method
    min_keep = 0
    exclude = ["classifier*"]
    [train]                              # TrainConfig fields (+ threads, sleep for the runners)
    epochs = 2
    [dataset_settings.cifar10]           # per-dataset overrides of [train]
    num_classes = 10
    [[methods]]                          # a method table: label, method, preset, opts, and any
    label = "yopo-r4-erk"                # CalibrationSettings field (mode = the paper's name of
    method = "yopo"                      # allocation)
    preset = "paper"
    allocation = "erk"
    opts = {rank = 4}                    # the method's options (YOPO: YopoConfig fields)

Calibration settings of a method, later ones winning: the defaults, its ``preset``, the sweep's
``[calibration]`` table, its label's shorthand, its own keys. Shorthands: ``yopo-G`` = yopo with
allocation global, ``yopo-L`` = yopo with allocation uniform (the paper's local mode), ``random`` =
random with allocation uniform (within-layer random); any other registered name = that method. A
suffix ``-std`` selects mean/STD thresholds (e.g. ``yopo-G-std``).

Every calibration setting and YOPO option is part of the run id and is recorded in the run's
``settings``; the masks are built from exactly those recorded settings (``families.run_masks``).
A run id hashes each setting as its difference from ``spec.IDENTITY_BASE`` (the defaults when ids
were introduced) and renamed keys under their old names (``spec.OLD_NAMES``), so the runs of
existing sweep databases keep their ids (checked on the shipped benchmark database), and a changed
default never gives an old id a new meaning. Changed in this version: ``[train]`` no longer takes
``exclude``/``robust``/``min_keep`` (they were hashed but never used: such runs had masks made with
the defaults; the keys belong to ``[calibration]`` now and a ``[train]`` holding them is an error
that says so), ``init`` is ``weight_init``, and the YOPO options ``init``/``solver``/``threads`` are
``nmf_init``/``nmf_solver``/``nmf_threads`` (an old name is an error naming the new one).

A runner is ``fn(settings: dict, masks: dict) -> dict`` with at least ``test_acc``, in **percent**
(0-100: the unit of every accuracy in yopo, in ``result.json``, the store and the reports).
``settings`` holds the run's axes plus ``train`` (the merged train settings), ``calibration`` (the
full settings the masks were made with), ``opts`` and ``init_seed`` (the seed of the
initialization the masks must be applied to). The stored result also holds ``calibration``: the
per-layer kept weights, empty rows and columns, effective (on-path) weights and sparsity, and the
warnings.

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
