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
    variants = ["none"]                  # none | shuffle | reinit | invert (yopo.sanity)
    cross_seed = "none"                  # none | next | all: I^3 runs (mask of seed s on init s')
    cross_dataset = false                # DTI runs: mask family of every other dataset
    runner = "train"                     # train | synthetic | "module:function"
    [train]                              # run settings (yopo.train.TrainConfig fields)
    epochs = 2
    [dataset_settings.cifar10]           # per-dataset overrides
    num_classes = 10

Method shorthands: ``yopo-G`` = yopo/global, ``yopo-L`` = yopo/local, ``random`` = random/local
(within-layer random); any other registered name = that method, global calibration. A suffix
``-std`` selects mean/STD thresholds (e.g. ``yopo-G-std``).

A runner is ``fn(settings: dict, masks: dict) -> dict`` with at least ``test_acc`` (percent).
``settings`` holds the run's axes plus ``train`` (the merged train settings) and ``init_seed``
(the seed of the initialization the masks must be applied to).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import socket
import sqlite3
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .sanity import VARIANTS

# train settings that locate or schedule a run but do not change its result: not hashed
NON_IDENTITY = frozenset({"device", "data_root", "progress", "num_workers", "log_every", "out_dir", "sleep", "checkpoint",
                          "threads"})
CROSS_SEED = ("none", "next", "all")
SHORTHANDS = {"yopo-G": ("yopo", "global"), "yopo-L": ("yopo", "local"), "random": ("random", "local")}


# ----------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class MethodSpec:
    label: str
    method: str
    mode: str = "global"
    robust: str = "mad"
    opts: tuple = ()  # sorted (key, value) pairs of the scoring method's options

    @property
    def options(self) -> dict:
        return dict(self.opts)

    @classmethod
    def parse(cls, item) -> "MethodSpec":
        if isinstance(item, str):
            label, robust = item, "mad"
            base = label
            if base.endswith("-std"):
                base, robust = base[:-4], "std"
            elif base.endswith("-mad"):
                base = base[:-4]
            method, mode = SHORTHANDS.get(base, (base, "global"))
            return cls(label, method, mode, robust)
        if isinstance(item, dict):
            unknown = set(item) - {"label", "method", "mode", "robust", "opts"}
            if unknown:
                raise ValueError(f"method entry {item}: unknown keys {sorted(unknown)}")
            if "method" not in item and "label" not in item:
                raise ValueError(f"method entry {item} needs 'method' or 'label'")
            base = cls.parse(item.get("label", item.get("method")))
            return cls(item.get("label", base.label), item.get("method", base.method), item.get("mode", base.mode),
                       item.get("robust", base.robust), tuple(sorted((item.get("opts") or {}).items())))
        raise ValueError(f"method entry must be a string or a table; got {item!r}")

    def to_dict(self) -> dict:
        return {"label": self.label, "method": self.method, "mode": self.mode, "robust": self.robust,
                "opts": self.options}


@dataclass(frozen=True)
class SweepSpec:
    name: str
    out: str
    models: tuple
    datasets: tuple
    methods: tuple  # of MethodSpec
    sparsities: tuple
    seeds: tuple
    variants: tuple = ("none",)
    cross_seed: str = "none"
    cross_dataset: bool = False
    cross_methods: tuple | None = None  # labels that get transfer runs (default: all)
    runner: str = "train"
    scorer: str = "default"
    train: dict = field(default_factory=dict)
    dataset_settings: dict = field(default_factory=dict)
    score_batch: int | None = None  # data-dependent scoring batch (default: the method's batch_size, else the training batch)

    @classmethod
    def from_dict(cls, d: dict, *, base_dir: str | os.PathLike | None = None) -> "SweepSpec":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"sweep config: unknown keys {unknown}; allowed: {sorted(known)}")
        for key in ("models", "datasets", "methods", "sparsities", "seeds"):
            if not d.get(key):
                raise ValueError(f"sweep config: {key!r} must be a non-empty list")
        d.setdefault("name", "sweep")
        d.setdefault("out", f"runs/{d['name']}")
        methods = tuple(MethodSpec.parse(m) for m in d["methods"])
        labels = [m.label for m in methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sweep config: duplicate method labels {labels}")
        sp = tuple(float(s) for s in d["sparsities"])
        if any(not 0.0 <= s < 1.0 for s in sp):
            raise ValueError(f"sweep config: sparsities must lie in [0, 1); got {sp}")
        variants = tuple(d.get("variants", ("none",)))
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"sweep config: unknown variants {bad}; allowed: {list(VARIANTS)}")
        cs = d.get("cross_seed", "none")
        if cs is True:
            cs = "all"
        if cs in (False, None):
            cs = "none"
        if cs not in CROSS_SEED:
            raise ValueError(f"sweep config: cross_seed must be one of {CROSS_SEED}; got {cs!r}")
        cm = d.get("cross_methods")
        if cm is not None:
            missing = sorted(set(cm) - set(labels))
            if missing:
                raise ValueError(f"sweep config: cross_methods {missing} are not method labels {labels}")
        out = d["out"]
        return cls(name=str(d["name"]), out=str(out), models=tuple(d["models"]), datasets=tuple(d["datasets"]),
                   methods=methods, sparsities=sp, seeds=tuple(int(s) for s in d["seeds"]), variants=variants,
                   cross_seed=cs, cross_dataset=bool(d.get("cross_dataset", False)),
                   cross_methods=tuple(cm) if cm is not None else None, runner=str(d.get("runner", "train")),
                   scorer=str(d.get("scorer", "default")), train=dict(d.get("train") or {}),
                   dataset_settings={k: dict(v) for k, v in (d.get("dataset_settings") or {}).items()},
                   score_batch=int(d["score_batch"]) if d.get("score_batch") else None)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"] = [m.to_dict() for m in self.methods]
        return d


def load_config(path) -> dict:
    """Read a sweep config from ``.json`` or ``.toml``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sweep config {path} does not exist")
    if path.suffix.lower() == ".toml":
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    raise ValueError(f"sweep config must be .json or .toml; got {path.name}")


# ----------------------------------------------------------------------------------------------
# runs


def digest(obj, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Run:
    """One training run of a sweep. ``identity`` is hashed into ``id``; ``settings`` adds the
    non-identity train settings (device, data location...)."""

    id: str
    identity: dict
    settings: dict
    family_key: str
    family: dict  # what the family (saliency) depends on
    target_family_key: str | None = None  # dataset transfer: the target's own family (head layers)
    target_family: dict | None = None

    @property
    def label(self) -> str:
        return self.identity["label"]


def _needs_data(method: str) -> bool:
    try:
        from .registry import get_method

        return not get_method(method).data_free
    except Exception:  # unknown method: treat as data-dependent so the family key is specific
        return True


SPARSITY_OPTIONS = ("sparsity", "target_sparsity")


def _option_names(method: str) -> set[str]:
    """The option names of a registered method's config (empty for an unknown method)."""
    try:
        from .registry import get_method

        return {f.name for f in dataclasses.fields(get_method(method).config)}
    except Exception:
        return set()


def _per_sparsity(method: str) -> str | None:
    """Methods whose scores depend on the target sparsity (e.g. iterative SynFlow) get one family
    per sparsity; detected by a ``sparsity``/``target_sparsity`` field of the method's options.
    Returns that field's name (or None)."""
    names = _option_names(method)
    return next((n for n in SPARSITY_OPTIONS if n in names), None)


def _train_settings(spec: SweepSpec, dataset: str) -> dict:
    t = dict(spec.train)
    t.update(spec.dataset_settings.get(dataset, {}))
    return t


def _family(spec: SweepSpec, model: str, m: MethodSpec, seed: int, dataset: str, sparsity: float) -> dict:
    t = _train_settings(spec, dataset)
    fam = {"model": model, "num_classes": num_classes_of(dataset, t), "seed": seed, "method": m.method,
           "opts": m.options, "init": t.get("init"), "model_opts": model_kwargs(model, dataset, t)}
    if _needs_data(m.method):
        fam.update(dataset=dataset, score_batch=spec.score_batch or _method_batch(m) or _recipe_batch(dataset, t),
                   train={k: t.get(k) for k in ("data_root", "subset", "subset_seed", "image_size")})
    field_name = _per_sparsity(m.method)
    if field_name and field_name not in m.options:
        fam["sparsity"] = sparsity
        fam["sparsity_option"] = field_name
    if "input_shape" not in m.options and "input_shape" in _option_names(m.method):
        # data-free methods that build their own input (SynFlow's all-ones) need the data's shape;
        # it is part of the family's identity: SynFlow on 32x32 ones differs from 64x64 ones
        fam["input_shape"] = list(dataset_input_shape(dataset, t))
    return fam


def _method_batch(m: MethodSpec) -> int | None:
    """The scoring batch a data-dependent method asks for (its ``batch_size`` option, e.g. SNIP and
    GraSP: 1024 as in App. E), as the training pipeline uses it."""
    try:
        from .registry import scoring_batch_size

        return scoring_batch_size(m.method, m.options, None)
    except Exception:
        return None


def _recipe_batch(dataset: str, train: dict) -> int:
    """The batch size the training pipeline would score data-dependent methods with."""
    if train.get("batch_size"):
        return int(train["batch_size"])
    try:
        from .train import TrainConfig

        return int(TrainConfig(dataset=dataset, recipe=train.get("recipe")).resolved().batch_size)
    except Exception:
        return 128


def family_key(fam: dict) -> str:
    """Hash of what a family depends on (the data location is not part of it)."""
    ident = dict(fam)
    if isinstance(ident.get("train"), dict):
        ident["train"] = {k: v for k, v in ident["train"].items() if k not in NON_IDENTITY}
    return digest(ident)


def expand(spec: SweepSpec) -> list[Run]:
    """All runs of a sweep, in a deterministic order (model, dataset, method, seed, sparsity...)."""
    runs: dict[str, Run] = {}
    cross = set(spec.cross_methods) if spec.cross_methods is not None else {m.label for m in spec.methods}
    for model in spec.models:
        for dataset in spec.datasets:
            train = _train_settings(spec, dataset)
            ident_train = {k: v for k, v in sorted(train.items()) if k not in NON_IDENTITY}
            for m in spec.methods:
                for seed in spec.seeds:
                    for sp in spec.sparsities:
                        combos = [(v, seed, dataset) for v in spec.variants]
                        if m.label in cross:
                            if spec.cross_seed != "none" and len(spec.seeds) > 1:
                                i = spec.seeds.index(seed)
                                others = [s for s in spec.seeds if s != seed]
                                if spec.cross_seed == "next":
                                    others = [spec.seeds[(i + 1) % len(spec.seeds)]]
                                combos += [("none", ms, dataset) for ms in others]
                            if spec.cross_dataset:
                                combos += [("none", seed, src) for src in spec.datasets if src != dataset]
                        for variant, mask_seed, mask_ds in combos:
                            identity = {"model": model, "dataset": dataset, "label": m.label, "method": m.method,
                                        "mode": m.mode, "robust": m.robust, "opts": m.options, "sparsity": sp,
                                        "seed": seed, "mask_seed": mask_seed, "mask_dataset": mask_ds,
                                        "variant": variant, "train": ident_train}
                            rid = digest(identity)
                            fam = _family(spec, model, m, mask_seed, mask_ds, sp)
                            tkey = tfam = None
                            if mask_ds != dataset:
                                tfam = _family(spec, model, m, seed, dataset, sp)
                                tkey = family_key(tfam)
                            settings = dict(identity, train=train, sweep=spec.name)
                            runs[rid] = Run(rid, identity, settings, family_key(fam), fam, tkey, tfam)
    return list(runs.values())


# ----------------------------------------------------------------------------------------------
# database


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, sweep TEXT, status TEXT NOT NULL,
    model TEXT, dataset TEXT, label TEXT, method TEXT, mode TEXT, robust TEXT, sparsity REAL,
    seed INTEGER, mask_seed INTEGER, mask_dataset TEXT, variant TEXT,
    test_acc REAL, test_loss REAL, train_loss REAL, time_s REAL, calib_time_s REAL,
    achieved_sparsity REAL, family TEXT, settings TEXT NOT NULL, result TEXT, error TEXT,
    host TEXT, finished REAL);
CREATE TABLE IF NOT EXISTS families (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, model TEXT, method TEXT, seed INTEGER, dataset TEXT,
    score_time_s REAL, settings TEXT, created REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
RUN_COLUMNS = ("model", "dataset", "label", "method", "mode", "robust", "sparsity", "seed", "mask_seed",
               "mask_dataset", "variant")


class ResultsDB:
    """The sweep database. Every write is one transaction; readers see only finished runs."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise ValueError(f"{self.path} is not a yopo sweep database ({e})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def done_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM runs WHERE status = 'done'")}

    def record(self, run: Run, result: dict | None, *, error: str | None = None) -> None:
        """Store one finished (or failed) run in a single transaction."""
        status = "done" if error is None else "failed"
        r = result or {}
        vals = {c: run.identity[c] for c in RUN_COLUMNS}
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs (id, sweep, status, " + ", ".join(RUN_COLUMNS) +
                ", test_acc, test_loss, train_loss, time_s, calib_time_s, achieved_sparsity, family, settings, "
                "result, error, host, finished) VALUES (" + ", ".join(["?"] * (len(RUN_COLUMNS) + 15)) + ")",
                (run.id, run.settings.get("sweep"), status, *[vals[c] for c in RUN_COLUMNS],
                 _num(r.get("test_acc")), _num(r.get("test_loss")), _num(r.get("train_loss")), _num(r.get("time_s")),
                 _num(r.get("calib_time_s")), _num(r.get("achieved_sparsity")), run.family_key,
                 json.dumps(run.settings, sort_keys=True, default=str),
                 json.dumps(r, sort_keys=True, default=_jsonable), error, socket.gethostname(), time.time()))

    def record_family(self, key: str, path: str, fam: dict, score_time_s: float) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO families VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (key, str(path), fam.get("model"), fam.get("method"), fam.get("seed"), fam.get("dataset"),
                       score_time_s, json.dumps(fam, sort_keys=True, default=str), time.time()))

    def set_meta(self, key: str, value) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def meta(self) -> dict:
        return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT key, value FROM meta")}

    def runs(self, status: str | None = "done") -> list[dict]:
        q = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY rowid"
        rows = self.conn.execute(q, (status,) if status else ())
        out = []
        for row in rows:
            d = dict(row)
            d["settings"] = json.loads(d["settings"])
            d["result"] = json.loads(d["result"]) if d["result"] else {}
            out.append(d)
        return out

    def families(self) -> list[dict]:
        out = []
        for row in self.conn.execute("SELECT * FROM families ORDER BY rowid"):
            d = dict(row)
            d["settings"] = json.loads(d["settings"]) if d["settings"] else {}
            out.append(d)
        return out

    def count(self, status: str = "done") -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]


def _num(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# ----------------------------------------------------------------------------------------------
# families (once-only saliency) and masks


def resolve(name: str, builtins: dict) -> Callable:
    """A runner/scorer by builtin name or ``module:function``."""
    if name in builtins:
        name = builtins[name]
    mod, _, fn = name.partition(":")
    if not fn:
        raise ValueError(f"expected a builtin name {sorted(builtins)} or 'module:function'; got {name!r}")
    return getattr(importlib.import_module(mod), fn)


def default_scorer(fam: dict):
    """Initialize ``fam['model']`` from ``fam['seed']`` and score it once; returns a Family."""
    from .family import Family
    from .layers import prunable_layers
    from .registry import get_method, score

    model = build_model(fam["model"], fam.get("num_classes") or 10, fam["seed"], fam.get("init"),
                        fam.get("model_opts"))
    opts = dict(fam.get("opts") or {})
    if "sparsity_option" in fam:
        opts[fam["sparsity_option"]] = fam["sparsity"]
    if "input_shape" in fam:
        opts["input_shape"] = tuple(int(v) for v in fam["input_shape"])
    data = None
    if not get_method(fam["method"]).data_free:
        data = scoring_batch(fam)
    t0 = time.perf_counter()
    scores = score(model, fam["method"], seed=fam["seed"], data=data, **opts)
    dt = time.perf_counter() - t0
    f = Family.from_scores(scores, prunable_layers(model), method=fam["method"], settings=opts, seed=fam["seed"],
                           model_name=fam["model"])
    f.meta.update(num_classes=fam.get("num_classes"), score_time_s=dt, dataset=fam.get("dataset"))
    return f


def build_model(name: str, num_classes: int, seed: int, init: str | None = None, model_opts: dict | None = None):
    """The initialization a family is computed from: ``yopo.models.build`` seeded with ``seed``
    and the training default init, exactly as the training pipeline builds the model it trains,
    so a mask lands on the weights it was computed for (checked by :func:`check_same_init`)."""
    from .models import build

    return build(name, num_classes, init=init or _default_init(), seed=seed, **(model_opts or {}))


def _default_init() -> str:
    try:
        from .train import TrainConfig

        return TrainConfig().init
    except Exception:  # harness not importable: the models' default
        return "kaiming_normal"


_DATA_CACHE: dict = {}


def load_dataset(dataset: str, train: dict, *, seed: int = 0):
    """``yopo.data.load_data`` with the run's settings (cached per process)."""
    from .data import load_data

    key = digest([dataset, {k: train.get(k) for k in ("data_root", "subset", "subset_seed", "test_subset",
                                                       "image_size", "batch_size")}, seed])
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_data(dataset, train.get("data_root"), batch_size=int(train.get("batch_size") or 128),
                                     seed=seed, subset=train.get("subset"), subset_seed=int(train.get("subset_seed") or 0),
                                     test_subset=train.get("test_subset"), image_size=train.get("image_size"),
                                     device="cpu")
    return _DATA_CACHE[key]


def scoring_batch(fam: dict):
    """One deterministic batch of the scoring dataset (data-dependent methods: SNIP, GraSP...)."""
    data = load_dataset(fam["dataset"], fam.get("train") or {}, seed=fam["seed"])
    return data.example_batch(int(fam.get("score_batch") or 256))


KNOWN_NUM_CLASSES = {"digits": 10, "mnist1d": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200,
                     "imagenet": 1000}


INPUT_SHAPES = {"digits": (1, 8, 8), "mnist1d": (40,), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
                "tinyimagenet": (3, 64, 64), "imagenet": (3, 224, 224)}


def model_kwargs(model: str, dataset: str, train: dict) -> dict:
    """Constructor keywords the training pipeline derives from the data's input shape (same rule as
    ``yopo.train.run``), so the family is computed on exactly the model that gets trained."""
    from .models import input_kwargs

    return input_kwargs(model, dataset_input_shape(dataset, train))


def dataset_input_shape(dataset: str, train: dict) -> tuple[int, ...]:
    """One example's shape (no batch dim): known datasets from ``INPUT_SHAPES``, others loaded."""
    shape = INPUT_SHAPES.get(dataset)
    return tuple(shape) if shape is not None else tuple(load_dataset(dataset, train).input_shape)


def num_classes_of(dataset: str, train: dict) -> int:
    if train.get("num_classes"):
        return int(train["num_classes"])
    if dataset in KNOWN_NUM_CLASSES:
        return KNOWN_NUM_CLASSES[dataset]
    return int(load_dataset(dataset, train).num_classes)


def train_config(settings: dict):
    """The ``yopo.train.TrainConfig`` of a run: its train settings (unknown keys dropped), the
    model/dataset axes and ``seed = init_seed`` (the initialization the masks belong to)."""
    from .train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    t = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings["train"].items() if k in fields}
    t.update(model=settings["model"], dataset=settings["dataset"], seed=int(settings.get("init_seed", settings["seed"])),
             robust=settings.get("robust", "mad"))
    t.setdefault("progress", False)
    return TrainConfig(**t)


def train_runner(settings: dict, masks: dict) -> dict:
    """Train one run with ``yopo.train.run(cfg, masks=...)`` (resumable from its out_dir)."""
    from .train import run

    threads = settings["train"].get("threads")
    if threads:  # e.g. 1 per worker on a shared machine (2 threads spin badly on busy cores)
        import torch

        torch.set_num_threads(int(threads))
    cfg = train_config(settings)
    res = run(cfg, method=settings["method"], sparsity=settings["sparsity"], mode=settings["mode"], masks=masks,
              out_dir=settings.get("out_dir"), resume=True, progress=bool(cfg.progress))
    res = dict(res)
    if settings.get("out_dir"):  # the run is finished: its resume checkpoint is no longer needed
        with contextlib.suppress(Exception):
            from .train.loop import CHECKPOINT

            (Path(settings["out_dir"]) / CHECKPOINT).unlink(missing_ok=True)
    if len(json.dumps(res.get("history", []), default=str)) > 50000:
        res.pop("history")
    for k in ("test_acc", "train_acc"):  # yopo.train reports fractions; the sweep stores percent
        if res.get(k) is not None:
            res[k] = 100.0 * float(res[k])
    return res


def family_path(folder, key: str) -> Path:
    return Path(folder) / "families" / f"{key}.safetensors"


_FAMILY_CACHE: dict[str, Any] = {}


def load_family(path):
    from .family import Family

    path = str(path)
    if path not in _FAMILY_CACHE:
        if len(_FAMILY_CACHE) > 8:
            _FAMILY_CACHE.clear()
        _FAMILY_CACHE[path] = Family.load(path)
    return _FAMILY_CACHE[path]


def ensure_family(folder, key: str, fam: dict, scorer: Callable) -> tuple[str, float]:
    """Compute and cache a family unless its file exists; returns (path, score time in s)."""
    path = family_path(folder, key)
    if path.exists():
        return str(path), float(load_family(path).meta.get("score_time_s", math.nan))
    t0 = time.perf_counter()
    f = scorer(fam)
    dt = float(f.meta.get("score_time_s", time.perf_counter() - t0))
    f.meta["score_time_s"] = dt
    f.meta["family_key"] = key
    f.save(path)  # atomic
    return str(path), dt


def transfer_masks(src_masks: dict, tgt_scores: dict) -> tuple[dict, list[str]]:
    """Source masks on a target model: layers of equal shape take the source mask; a layer whose
    shape differs (e.g. the classifier for another number of classes, or the stem for another
    number of input channels) keeps the source layer's *fraction* of survivors, chosen by the
    target's own scores. Returns (masks, names of the layers that fell back)."""
    from .calibrate import n_keep, topk_mask

    out, fallback = {}, []
    for n, s in tgt_scores.items():
        m = src_masks.get(n)
        if m is not None and tuple(m.shape) == tuple(s.shape):
            out[n] = m.bool()
            continue
        frac = float(m.float().mean()) if m is not None else 1.0
        k = n_keep(1.0 - frac, s.numel())
        out[n] = topk_mask(s.flatten().float(), k).reshape(s.shape)
        fallback.append(n)
    return out, fallback


def run_masks(run: Run, folder) -> tuple[dict, dict]:
    """Masks of a run from its cached family (no rescoring), and diagnostics."""
    from .sanity import variant_masks

    ident = run.identity
    fam = load_family(family_path(folder, run.family_key))
    t0 = time.perf_counter()

    def calibrate(scores):
        from .calibrate import mort

        return mort(scores, ident["sparsity"], mode=ident["mode"], robust=ident["robust"])

    masks, offset, info = variant_masks(ident["variant"], calibrate, fam.scores, seed=ident["seed"])
    if run.target_family_key is not None:
        tgt = load_family(family_path(folder, run.target_family_key))
        masks, fb = transfer_masks(masks, tgt.scores)
        info["transfer_fallback_layers"] = fb
    info["calib_time_s"] = time.perf_counter() - t0
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    info["achieved_sparsity"] = 1.0 - kept / total
    info["layer_sparsity"] = {n: 1.0 - float(m.sum()) / m.numel() for n, m in masks.items()}
    info["init_seed"] = ident["seed"] + offset
    info["score_time_s"] = fam.meta.get("score_time_s")
    return masks, info


# ----------------------------------------------------------------------------------------------
# runners

RUNNERS = {"train": "yopo.sweep:train_runner", "synthetic": "yopo.sweep:synthetic_runner"}
SCORERS = {"default": "yopo.sweep:default_scorer"}


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
    return {"test_acc": acc, "test_loss": (100 - acc) / 50, "train_loss": (100 - acc) / 40, "epochs": 0,
            "time_s": 0.0, "sparsity": s, "params": total, "params_kept": kept, "flops": None, "flops_kept": None}


# ----------------------------------------------------------------------------------------------
# execution


_WORKER: dict = {}


def _worker_init(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except Exception:
        pass


def _compute_family(folder, key, fam, scorer_name) -> tuple[str, str, float]:
    path, dt = ensure_family(folder, key, fam, resolve(scorer_name, SCORERS))
    return key, path, dt


def execute(run: Run, folder, runner: Callable) -> dict:
    """Masks from the cached family, then the runner; returns the result record."""
    masks, info = run_masks(run, folder)
    settings = dict(run.settings, init_seed=info["init_seed"], family=run.family_key,
                    out_dir=str(Path(folder) / "runs" / run.id))
    t0 = time.perf_counter()
    res = dict(runner(settings, masks))
    res.setdefault("wall_s", time.perf_counter() - t0)
    for k, v in info.items():
        res.setdefault(k, v)
    if "test_acc" not in res:
        raise RuntimeError(f"runner returned no test_acc for run {run.id}: {sorted(res)}")
    return res


def _execute_by_name(run: Run, folder, runner_name: str) -> tuple[str, dict]:
    return run.id, execute(run, folder, resolve(runner_name, RUNNERS))


@dataclass
class SweepSummary:
    total: int
    skipped: int
    done: int
    failed: int
    families_computed: int
    folder: str
    db: str

    def __str__(self):
        return (f"{self.total} runs: {self.skipped} already done, {self.done} run now, {self.failed} failed; "
                f"{self.families_computed} saliency families computed; results in {self.db}")


def run_sweep(spec: SweepSpec, *, workers: int = 1, runner: Callable | str | None = None,
              scorer: Callable | str | None = None, fail_fast: bool = False, log=None,
              limit: int | None = None) -> SweepSummary:
    """Run every run of ``spec`` not yet recorded ``done`` in ``<spec.out>/results.sqlite``.

    Exceptions raised by a run are recorded as ``failed`` (retried on the next invocation) and the
    sweep goes on, unless ``fail_fast``. ``KeyboardInterrupt``/``SystemExit`` stop the sweep at
    once; the runs finished so far are already committed. ``runner``/``scorer`` may be callables
    (serial execution only) or names (builtin or ``module:function``); they default to the spec's.
    ``limit`` stops after that many new runs (for smoke tests).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folder = Path(spec.out)
    folder.mkdir(parents=True, exist_ok=True)
    runner = runner if runner is not None else spec.runner
    scorer = scorer if scorer is not None else spec.scorer
    if workers > 1 and (callable(runner) or callable(scorer)):
        raise ValueError("with workers > 1, runner and scorer must be given by name ('module:function')")
    runs = expand(spec)
    db = ResultsDB(folder / "results.sqlite")
    try:
        db.set_meta("spec", spec.to_dict())
        done = db.done_ids()
        pending = [r for r in runs if r.id not in done]
        if limit is not None:
            pending = pending[:limit]
        skipped = len(runs) - len([r for r in runs if r.id not in done])
        log(f"sweep {spec.name}: {len(runs)} runs, {skipped} already done, {len(pending)} to run"
            f" ({workers} worker{'s' if workers > 1 else ''})")

        # phase 1: once-only saliency per family (shared by all sparsities / modes / variants)
        fams: dict[str, dict] = {}
        for r in pending:
            fams.setdefault(r.family_key, r.family)
            if r.target_family_key:
                fams.setdefault(r.target_family_key, r.target_family)
        known = {f["key"] for f in db.families()}
        missing = {k: f for k, f in fams.items() if not family_path(folder, k).exists()}
        n_new = len(missing)
        scorer_fn = resolve(scorer, SCORERS) if isinstance(scorer, str) else scorer
        if workers > 1 and len(missing) > 1:
            with _pool(workers) as pool:
                futs = [pool.submit(_compute_family, str(folder), k, f, scorer) for k, f in missing.items()]
                for fut in futs:
                    k, path, dt = fut.result()
                    db.record_family(k, path, fams[k], dt)
                    log(f"  family {k} ({fams[k]['method']}, seed {fams[k]['seed']}): {dt:.2f}s")
        else:
            for k, f in missing.items():
                path, dt = ensure_family(folder, k, f, scorer_fn)
                db.record_family(k, path, f, dt)
                log(f"  family {k} ({f['method']}, seed {f['seed']}): {dt:.2f}s")
        for k, f in fams.items():  # files present but not registered (e.g. killed between the two)
            if k not in known and k not in missing:
                p = family_path(folder, k)
                db.record_family(k, str(p), f, float(load_family(p).meta.get("score_time_s", math.nan)))

        # phase 2: the runs
        n_done = n_failed = 0
        t_start = time.time()

        def finished(run: Run, res: dict | None, err: str | None) -> None:
            nonlocal n_done, n_failed
            db.record(run, res, error=err)
            if err is None:
                n_done += 1
                i = n_done + n_failed
                eta = (time.time() - t_start) / i * (len(pending) - i)
                log(f"  [{i}/{len(pending)}] {run.identity['model']} {run.identity['dataset']} {run.label} "
                    f"p={run.identity['sparsity']} seed={run.identity['seed']} mask_seed="
                    f"{run.identity['mask_seed']} mask_ds={run.identity['mask_dataset']} "
                    f"variant={run.identity['variant']}: acc {res['test_acc']:.2f}  (eta {eta / 60:.1f} min)")
            else:
                n_failed += 1
                log(f"  run {run.id} ({run.label} p={run.identity['sparsity']} seed={run.identity['seed']}) "
                    f"FAILED: {err.splitlines()[-1] if err else err}")

        if workers <= 1:
            runner_fn = resolve(runner, RUNNERS) if isinstance(runner, str) else runner
            for run in pending:
                try:
                    res = execute(run, folder, runner_fn)
                except Exception as e:  # noqa: BLE001 - recorded, then re-raised if fail_fast
                    finished(run, None, _format_error(e))
                    if fail_fast:
                        raise
                    continue
                finished(run, res, None)
        else:
            by_id = {r.id: r for r in pending}
            with _pool(workers) as pool:
                futs = {pool.submit(_execute_by_name, r, str(folder), runner): r.id for r in pending}
                try:
                    remaining = set(futs)
                    while remaining:
                        ready, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                        for fut in ready:
                            run = by_id[futs[fut]]
                            try:
                                _, res = fut.result()
                            except Exception as e:  # noqa: BLE001
                                finished(run, None, _format_error(e))
                                if fail_fast:
                                    raise
                                continue
                            finished(run, res, None)
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
        return SweepSummary(len(runs), skipped, n_done, n_failed, n_new, str(folder), str(db.path))
    finally:
        db.close()


def _format_error(e: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]


@contextlib.contextmanager
def _pool(workers: int):
    import multiprocessing as mp

    cores = os.cpu_count() or 1
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(max(1, cores // workers),))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
