"""Sweep configs and their expansion into runs: :class:`MethodSpec`, :class:`SweepSpec`,
:func:`load_config`, :class:`Run`, :func:`expand`; run ids and family keys are hashes
(:func:`digest`) of the dicts built here."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...core.allocation import canonical
from ...core.calibration import CalibrationSettings
from ...core.config import field_names, from_mapping, opt, to_mapping, validate_fields
from ...core.presets import preset_values
from ...core.registry import get_method, scoring_batch_size
from ...core.validate import check_sparsity
from ...models import input_kwargs, width_kwargs
from ..data import DATASETS, dataset_input_shape, num_classes_of
from ..sanity import VARIANTS

# train settings that locate or schedule a run but do not change its result: not hashed
NON_IDENTITY = frozenset({"device", "data_root", "progress", "num_workers", "log_every", "out_dir", "sleep", "checkpoint",
                          "threads", "channels_last"})
CROSS_SEED = ("none", "next", "all")
#: label -> (method, allocation); a suffix -std / -mad sets ``robust``
SHORTHANDS = {"yopo-G": ("yopo", "global"), "yopo-L": ("yopo", "uniform"), "yopo-LW": ("yopo", "layerwise"),
              "random": ("random", "uniform")}
#: the keys of a method entry besides the CalibrationSettings fields
METHOD_KEYS = ("label", "method", "preset", "opts", "mode")

# A run id hashes each setting's *difference* from these values: the defaults when the ids were
# introduced. So the ids of existing sweeps stay the same, and when a default changes (a new
# recommended preset) the runs of the old default keep their own ids instead of silently standing
# for the new settings. A new field must be added here with the value that reproduces the old
# behaviour (calibration: ``allocation`` and ``robust`` are hashed as ``mode`` and ``robust``).
IDENTITY_BASE = {
    "calibration": {"ranking": "score", "min_keep": 1, "col_keep": 0, "class_keep": 0, "min_layer_density": 0.0,
                    "calibration_solver": "exact", "exclude": [],
                    "kept_scale": "none"},
    "yopo": {"rank": 7, "iters": 200, "nmf_init": "uniform", "loss": "frobenius", "normalize": "none",
             "per_channel": False, "per_channel_rank": 1, "eps": 1e-8, "max_batch_elems": 1 << 22,
             "nmf_solver": "mu", "storage_dtype": "float32", "nmf_threads": 0,
             # added later: the values that reproduce the engine the first ids were computed with
             # (the fused kernel agrees with it on >= 0.9999 of mask entries, docs/performance.md)
             "kernel": "auto", "fast": False, "rank_fraction": 0.0, "full_rank": "clip", "residual_scale": "none",
             "paths": False, "paths_target": None, "paths_rounds": 100, "input_shape": [],
             "paths_structure": "flow",
             # auto: spread_flow's layer densities changed from the scale flow to the magnitude flow
             # on 2026-12-01, the flow's own mask on 2026-12-03; both times the stored runs of the old
             # behaviour were moved to their explicit paths_flow_weights="scale" ids
             "paths_flow_weights": "auto",
             # auto: spread and spread_flow also cover every input channel since 2026-12-03 (rows
             # only before); the stored runs of the old behaviour moved to paths_cover="rows" ids
             "paths_cover": "auto"},
}


#: options and keys renamed after run ids were introduced are hashed under their old names, so a
#: renamed spelling is the same run (YopoConfig.RENAMED: init/solver/threads -> nmf_*; [train] and
#: the family: init -> weight_init)
OLD_NAMES = {"yopo": {"nmf_init": "init", "nmf_solver": "solver", "nmf_threads": "threads"},
             "train": {"weight_init": "init"}}


def _diff(values: dict, base: dict) -> dict:
    return {k: v for k, v in sorted(values.items()) if k not in base or base[k] != v}


def _old_names(d: dict, section: str) -> dict:
    names = OLD_NAMES[section]
    return {names.get(k, k): v for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class MethodSpec:
    """One method entry of a sweep: its ``label``, the scoring ``method``, the method's options
    (``opts``; for YOPO the full :class:`YopoConfig`, preset and defaults resolved) and the
    :class:`CalibrationSettings` that turn its scores into every run's masks."""

    label: str
    method: str
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    opts: tuple = ()  # sorted (key, value) pairs of the scoring method's options
    preset: str | None = None

    @property
    def options(self) -> dict:
        return dict(self.opts)

    @property
    def mode(self) -> str:
        """The allocation in the paper's words where it has one (global, layerwise, local)."""
        return paper_mode(self.calibration.allocation)

    @property
    def robust(self) -> str:
        return self.calibration.robust

    @classmethod
    def parse(cls, item, calibration: Mapping | None = None) -> "MethodSpec":
        """A method entry: a label (``"yopo-G"``, ``"snip"``, ``"yopo-L-std"``) or a table with
        ``label``, ``method``, ``preset``, ``opts`` (the method's options) and any
        :class:`CalibrationSettings` field (``mode`` = the paper's name of ``allocation``).
        Calibration values, later ones winning: the defaults, the preset, ``calibration`` (the
        sweep's ``[calibration]`` table), the label's shorthand, the entry's own keys."""
        if isinstance(item, str):
            item = {"label": item}
        if not isinstance(item, Mapping):
            raise ValueError(f"method entry must be a string or a table; got {item!r}")
        allowed = list(METHOD_KEYS) + list(CAL_FIELDS)
        unknown = sorted(set(item) - set(allowed))
        if unknown:
            raise ValueError(f"method entry {dict(item)}: unknown keys {unknown}; allowed: {allowed}")
        if "method" not in item and "label" not in item:
            raise ValueError(f"method entry {dict(item)} needs 'method' or 'label'")
        label = str(item.get("label", item.get("method")))
        base, short = label, {}
        if base.endswith(("-std", "-mad")):
            base, short["robust"] = base[:-4], base[-3:]
        if base in SHORTHANDS:
            short["allocation"] = SHORTHANDS[base][1]
        method = str(item.get("method", SHORTHANDS.get(base, (base,))[0]))
        entry = {k: v for k, v in item.items() if k in CAL_FIELDS}
        if "mode" in item:
            if "allocation" in item and canonical(item["allocation"]) != canonical(item["mode"]):
                raise ValueError(f"method entry {label!r}: mode={item['mode']!r} and allocation="
                                 f"{item['allocation']!r} disagree; mode is the paper's name of allocation")
            entry["allocation"] = item["mode"]
        preset = item.get("preset")
        values = {**preset_values(preset, "calibration"), **dict(calibration or {}), **short, **entry}
        cal = from_mapping(CalibrationSettings, values, what=f"method {label!r} calibration")
        cal = cal.replace(allocation=canonical(cal.allocation))
        if not isinstance(item.get("opts") or {}, Mapping):
            raise ValueError(f"method entry {label!r}: opts must be a table of the method's options")
        opts = _method_options(label, method, dict(item.get("opts") or {}), preset)
        return cls(label, method, cal, tuple(sorted(opts.items())), preset)

    def identity(self) -> dict:
        """What of this entry goes into a run id (see :data:`IDENTITY_BASE`)."""
        ident = {"label": self.label, "method": self.method, "mode": self.mode, "robust": self.robust,
                 "opts": _old_names(_diff(self.options, IDENTITY_BASE["yopo"]), "yopo") if self.method == "yopo"
                 else self.options}
        rest = _diff({k: v for k, v in self.calibration.to_dict().items() if k not in ("allocation", "robust")},
                     IDENTITY_BASE["calibration"])
        if rest:
            ident["calibration"] = rest
        return ident

    def to_dict(self) -> dict:
        return {"label": self.label, "method": self.method, "preset": self.preset,
                "calibration": self.calibration.to_dict(), "opts": self.options}


CAL_FIELDS = tuple(field_names(CalibrationSettings))


def paper_mode(allocation: str) -> str:
    """``global``/``layerwise`` as they are, ``uniform`` as the paper's ``local``; other
    allocations by their own name (stored in the results' ``mode`` column)."""
    a = canonical(allocation)
    return "local" if a == "uniform" else a


def _method_options(label: str, method: str, opts: dict, preset: str | None) -> dict:
    """The options a method entry scores with: YOPO's resolved in full (preset, then the entry's
    ``opts``, over the defaults); a registered method's checked against its config (kept as given,
    so its defaults stay the method's); an unregistered one's (a custom scorer's) as given."""
    try:
        config = get_method(method).config
    except ValueError:  # not registered: a custom scorer may know it
        return opts
    what = f"method {label!r} opts"
    if method == "yopo":
        cfg = from_mapping(config, {**preset_values(preset, "yopo"), **opts}, what=what, renamed=config.RENAMED)
        return to_mapping(cfg)
    cfg = from_mapping(config, opts, what=what)
    return {k: (list(v) if isinstance(v := getattr(cfg, k), tuple) else v) for k in opts}


# the keys a [train] table may hold besides TrainConfig's fields: how the builtin runners execute
@dataclass(frozen=True)
class RunnerOptions:
    threads: int | None = opt(None, "torch threads of a train run (e.g. 1 per worker on a shared machine)", low=1)
    sleep: float = opt(0.0, "seconds the synthetic runner sleeps per run (simulated work)", low=0.0)

    def __post_init__(self):
        validate_fields(self)


TRAIN_AXES = ("model", "dataset", "seed")  # set by the sweep's axes, never by [train]


def check_train(table: Mapping, what: str) -> dict:
    """A ``[train]`` table (merged with a ``dataset_settings`` table): TrainConfig fields and
    :class:`RunnerOptions`, converted and validated by those dataclasses; returns it converted."""
    from ..train.config import RENAMED, TrainConfig

    table = dict(table)
    axes = sorted(set(table) & set(TRAIN_AXES))
    if axes:
        raise ValueError(f"{what}: {axes} are set by the sweep's axes (models, datasets, seeds), not by [train]")
    allowed = [k for k in field_names(TrainConfig) if k not in TRAIN_AXES] + field_names(RunnerOptions)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        hints = [f"{k} -> {RENAMED[k]}" for k in unknown if k in RENAMED]
        raise ValueError(f"{what}: unknown key(s) {unknown}" + (f" (moved: {'; '.join(hints)})" if hints else "")
                         + f"; allowed: {sorted(allowed)}")
    runner = {k: table[k] for k in field_names(RunnerOptions) if k in table}
    cfg = from_mapping(TrainConfig, {k: v for k, v in table.items() if k not in runner}, what=what)
    ro = from_mapping(RunnerOptions, runner, what=what)
    out = {}
    for k in table:
        v = getattr(ro if k in runner else cfg, k)
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _check_sparsities(name: str, value) -> None:
    for v in value:
        check_sparsity(v, f"{name} entry")


@dataclass(frozen=True)
class SweepSpec:
    """A sweep config (JSON or TOML), validated from these declarations; see the package docstring."""

    name: str = opt("sweep", "name of the sweep")
    out: str | None = opt(None, "sweep folder (default runs/<name>)")
    models: tuple[str, ...] = opt((), "architectures", min_items=1)
    datasets: tuple[str, ...] = opt((), "datasets", DATASETS, min_items=1)
    methods: tuple = opt((), "method entries (MethodSpec)", min_items=1)
    sparsities: tuple[float, ...] = opt((), "target sparsities in [0, 1)", min_items=1, check=_check_sparsities)
    seeds: tuple[int, ...] = opt((), "initialization seeds", low=0, min_items=1)
    variants: tuple[str, ...] = opt(("none",), "sanity variants", VARIANTS)
    cross_seed: str = opt("none", "I^3 runs: mask of seed s on init s' (next seed, or all others)", CROSS_SEED)
    cross_dataset: bool = opt(False, "DTI runs: mask family of every other dataset")
    cross_methods: tuple[str, ...] | None = opt(None, "labels that get transfer runs (default: all)")
    runner: str = opt("train", "train | synthetic | module:function")
    scorer: str = opt("default", "default | module:function")
    train: dict = opt({}, "run settings (TrainConfig fields; threads, sleep)")
    dataset_settings: dict = opt({}, "per-dataset overrides of train")
    calibration: dict = opt({}, "calibration defaults of every method (CalibrationSettings fields)")
    # data-dependent scoring batch (default: the method's batch_size, else the training batch)
    score_batch: int | None = opt(None, "scoring batch of data-dependent methods", low=1)

    def __post_init__(self):
        validate_fields(self)
        labels = [m.label for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sweep config: duplicate method labels {labels}")
        if self.cross_methods is not None:
            missing = sorted(set(self.cross_methods) - set(labels))
            if missing:
                raise ValueError(f"sweep config: cross_methods {missing} are not method labels {labels}")

    @classmethod
    def from_dict(cls, d: dict, *, base_dir: str | os.PathLike | None = None) -> "SweepSpec":
        d = dict(d)
        known = field_names(cls) + ["preset"]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"sweep config: unknown keys {unknown}; allowed: {sorted(known)}")
        if "preset" in d:  # a method-entry key, for every method
            raise ValueError("sweep config: 'preset' belongs to a method entry ({label = ..., preset = "
                             f"{d['preset']!r}}}), where it applies to that method")
        d.setdefault("name", "sweep")
        d.setdefault("out", f"runs/{d['name']}")
        table = d.get("calibration") or {}
        # checked on its own, so an error names the table rather than a method
        from_mapping(CalibrationSettings, table, what="sweep config [calibration]")
        d["calibration"] = dict(table)
        d["methods"] = tuple(MethodSpec.parse(m, table) for m in (d.get("methods") or ()))
        cs = d.get("cross_seed", "none")
        d["cross_seed"] = "all" if cs is True else "none" if cs in (False, None) else cs
        d["train"] = check_train(d.get("train") or {}, "sweep config [train]")
        ds = d.get("dataset_settings") or {}
        if not isinstance(ds, Mapping):
            raise ValueError("sweep config: dataset_settings must be a table of per-dataset tables")
        for name, extra in ds.items():
            check_train({**d["train"], **dict(extra)}, f"sweep config [dataset_settings.{name}]")
        d["dataset_settings"] = {k: dict(v) for k, v in ds.items()}
        try:
            return from_mapping(cls, d, what="sweep config")
        except (ValueError, TypeError) as e:
            msg = str(e)
            raise type(e)(msg if msg.startswith("sweep config") else f"sweep config: {msg}") from None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"] = [m.to_dict() for m in self.methods]
        return d


def load_config(path) -> dict:
    """Read a sweep config from ``.json`` or ``.toml``.

    A config may name another as its base, ``extends = "other.toml"`` (a path relative to this
    file): the base is read first (it may extend a third) and this file's keys are laid over it.
    Tables (``[train]``, ``[dataset_settings.*]``, ``[calibration]``) are merged key by key, with
    this file's values winning; everything else, ``methods`` included, is replaced whole. So a
    control sweep (other seeds, variants or methods on the same recipe) states only what differs,
    and its runs have the same ids as the base's runs of the same settings.
    """
    return _load_config(Path(path), ())


def _load_config(path: Path, chain: tuple[Path, ...]) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"sweep config {path} does not exist" +
                                (f" (extended by {chain[-1]})" if chain else ""))
    if path.suffix.lower() == ".toml":
        import tomllib

        with open(path, "rb") as f:
            d = tomllib.load(f)
    elif path.suffix.lower() == ".json":
        d = json.loads(path.read_text())
    else:
        raise ValueError(f"sweep config must be .json or .toml; got {path.name}")
    if "extends" not in d:
        return d
    base = d.pop("extends")
    if not isinstance(base, str) or not base:
        raise ValueError(f"sweep config {path.name}: extends must be the path of another sweep config; got {base!r}")
    base_path = (path.parent / base).resolve()
    seen = (*chain, path.resolve())
    if base_path in seen:
        cycle = " -> ".join(p.name for p in (*seen, base_path))
        raise ValueError(f"sweep config {path.name}: extends forms a cycle ({cycle})")
    return _overlay(_load_config(base_path, seen), d)


def _overlay(base: dict, top: dict) -> dict:
    """``base`` with ``top`` laid over it: tables merged recursively, other values replaced."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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


def _per_sparsity(method: str, opts: dict) -> str | None:
    """Methods whose scores depend on the target sparsity (e.g. iterative SynFlow, YOPO with paths)
    get one family per sparsity: the name of the option that takes the target
    (:func:`yopo.core.registry.target_option`), or None."""
    from ...core.registry import target_option

    try:
        return target_option(method, opts)
    except ValueError:  # an unregistered method (a custom scorer): a sparsity/target_sparsity option, by name
        names = _option_names(method)
        return next((n for n in SPARSITY_OPTIONS if n in names), None)


def _uses_input_shape(method: str, opts: dict) -> bool:
    """Whether the method builds its own input with these options (SynFlow; YOPO with paths)."""
    from ...core.registry import uses_input_shape

    try:
        return uses_input_shape(method, opts)
    except ValueError:  # an unregistered method (a custom scorer): its options are its own
        return False


def _train_settings(spec: SweepSpec, dataset: str) -> dict:
    t = dict(spec.train)
    t.update(spec.dataset_settings.get(dataset, {}))
    return t


def _family(spec: SweepSpec, model: str, m: MethodSpec, seed: int, dataset: str, sparsity: float) -> dict:
    t = _train_settings(spec, dataset)
    fam = {"model": model, "num_classes": num_classes_of(dataset, t), "seed": seed, "method": m.method,
           "opts": m.options, "weight_init": t.get("weight_init"), "model_opts": model_kwargs(model, dataset, t)}
    if _needs_data(m.method):
        fam.update(dataset=dataset, score_batch=spec.score_batch or _method_batch(m) or _recipe_batch(dataset, t),
                   train={k: t.get(k) for k in ("data_root", "subset", "subset_seed", "image_size")})
    field_name = _per_sparsity(m.method, m.options)
    opts = dict(m.options)
    if field_name and opts.get(field_name) in (None, (), []):  # unset (YOPO's options come resolved, as None)
        fam["sparsity"] = sparsity
        fam["sparsity_option"] = field_name
    if opts.get("input_shape") in (None, (), []) and _uses_input_shape(m.method, opts):
        # data-free methods that build their own input (SynFlow's all-ones) need the data's shape;
        # it is part of the family's identity: SynFlow on 32x32 ones differs from 64x64 ones
        fam["input_shape"] = list(dataset_input_shape(dataset, t))
    budget = m.calibration.budget_method
    if budget is not None and budget != m.method:
        # allocation from:<method>: that method's scores (default options) travel in the family
        # file, so every sparsity re-thresholds without rescoring
        fam["budget"] = _family(spec, model, MethodSpec.parse({"label": budget, "method": budget}), seed, dataset,
                                sparsity)
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
    """Hash of what a family depends on: the data location is not part of it, and YOPO's options
    count by their difference from :data:`IDENTITY_BASE` (as in run ids)."""
    return digest(_family_identity(fam))


def _family_identity(fam: dict) -> dict:
    ident = _old_names(fam, "train")
    if isinstance(ident.get("train"), dict):
        ident["train"] = {k: v for k, v in ident["train"].items() if k not in NON_IDENTITY}
    if ident.get("method") == "yopo" and isinstance(ident.get("opts"), dict):
        ident["opts"] = _old_names(_diff(ident["opts"], IDENTITY_BASE["yopo"]), "yopo")
    if isinstance(ident.get("budget"), dict):
        ident["budget"] = _family_identity(ident["budget"])
    return ident


def expand(spec: SweepSpec) -> list[Run]:
    """All runs of a sweep, in a deterministic order (model, dataset, method, seed, sparsity...)."""
    runs: dict[str, Run] = {}
    cross = set(spec.cross_methods) if spec.cross_methods is not None else {m.label for m in spec.methods}
    for model in spec.models:
        for dataset in spec.datasets:
            train = _train_settings(spec, dataset)
            ident_train = _old_names({k: v for k, v in sorted(train.items()) if k not in NON_IDENTITY}, "train")
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
                            identity = {"model": model, "dataset": dataset, **m.identity(), "sparsity": sp,
                                        "seed": seed, "mask_seed": mask_seed, "mask_dataset": mask_ds,
                                        "variant": variant, "train": ident_train}
                            rid = digest(identity)
                            fam = _family(spec, model, m, mask_seed, mask_ds, sp)
                            tkey = tfam = None
                            if mask_ds != dataset:
                                tfam = _family(spec, model, m, seed, dataset, sp)
                                tkey = family_key(tfam)
                            # the settings the masks are made with: recorded with the run, and
                            # the only source the sweep builds them from (families.run_masks)
                            settings = dict(identity, train=train, sweep=spec.name,
                                            calibration=m.calibration.to_dict(), opts=m.options)
                            runs[rid] = Run(rid, identity, settings, family_key(fam), fam, tkey, tfam)
    return list(runs.values())


def model_kwargs(model: str, dataset: str, train: dict) -> dict:
    """Constructor keywords the training pipeline derives from the data's input shape (same rule as
    ``yopo.experiment.train.run``), so the family is computed on exactly the model that gets
    trained."""
    return {**input_kwargs(model, dataset_input_shape(dataset, train)), **width_kwargs(model, train.get("model_width"))}
