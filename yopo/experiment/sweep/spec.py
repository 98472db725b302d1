"""Sweep configs and their expansion into runs: :class:`MethodSpec`, :class:`SweepSpec`,
:func:`load_config`, :class:`Run`, :func:`expand`; run ids and family keys are hashes
(:func:`digest`) of the dicts built here."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...core.registry import get_method, scoring_batch_size
from ...models import input_kwargs
from ..data import dataset_input_shape, num_classes_of
from ..sanity import VARIANTS

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
        return not get_method(method).data_free
    except ValueError:  # unknown method: treat as data-dependent so the family key is specific
        return True


SPARSITY_OPTIONS = ("sparsity", "target_sparsity")


def _option_names(method: str) -> set[str]:
    """The option names of a registered method's config (empty for an unknown method)."""
    try:
        return {f.name for f in dataclasses.fields(get_method(method).config)}
    except ValueError:  # unknown method
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
        return scoring_batch_size(m.method, m.options, None)
    except (ValueError, TypeError):  # unknown method, or options its config rejects
        return None


def _recipe_batch(dataset: str, train: dict) -> int:
    """The batch size the training pipeline would score data-dependent methods with."""
    if train.get("batch_size"):
        return int(train["batch_size"])
    from ..train import TrainConfig

    try:
        return int(TrainConfig(dataset=dataset, recipe=train.get("recipe")).resolved().batch_size)
    except (ValueError, TypeError):  # a dataset or recipe TrainConfig does not know
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


def model_kwargs(model: str, dataset: str, train: dict) -> dict:
    """Constructor keywords the training pipeline derives from the data's input shape (same rule as
    ``yopo.experiment.train.run``), so the family is computed on exactly the model that gets
    trained."""
    return input_kwargs(model, dataset_input_shape(dataset, train))
