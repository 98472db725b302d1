"""The settings every command shares, declared once: the calibration flags (from
:class:`CalibrationSettings`), the YOPO flags (from :class:`YopoConfig`) and ``--preset``, applied in
one order everywhere: dataclass defaults < base (a family's stored settings) < preset < explicit
flags. The per-layer mask table printed by ``prune`` and ``inspect``."""
from __future__ import annotations

import sys

from ..core.calibration import CalibrationSettings
from ..core.config import add_dataclass_args, explicit, from_args
from ..core.presets import PRESETS, preset_values
from ..methods.yopo.saliency import YopoConfig

#: what ``yopo prune`` / ``yopo train`` use for method yopo when no --preset is given (the paper's
#: method is ``--preset paper``); the Python API's defaults stay the paper's
DEFAULT_PRESET = "recommended"
#: ``--mode`` is the paper's name of the allocation (global = YOPO-G, local = YOPO-L)
CALIBRATION_ALIASES = {"allocation": ("--mode",)}
PRESET_HELP = ("named bundle of calibration and YOPO settings applied before the explicit flags (which win); "
               f"default for method yopo: {DEFAULT_PRESET}: "
               + "; ".join(f"{k} = {p.description}" for k, p in PRESETS.items())).replace("%", "%%")  # argparse formats help


def add_calibration_args(p, base: str = "") -> None:
    """The calibration flags; ``base`` says what a flag not given falls back to, if not the default."""
    add_dataclass_args(p, CalibrationSettings, explicit_only=True, aliases=CALIBRATION_ALIASES,
                       group="calibration (how scores become masks; --mode is the paper's name of --allocation"
                       + (f"; {base}" if base else "") + ")")


def add_yopo_args(p) -> None:
    add_dataclass_args(p, YopoConfig, explicit_only=True, group="YOPO saliency (method yopo)")


def calibration_from(args, preset: str | None = None, base: CalibrationSettings | None = None) -> CalibrationSettings:
    """The calibration settings of a command: ``base`` (default: the defaults), then the preset's
    values, then the flags given on the command line."""
    base = (base or CalibrationSettings()).replace(**preset_values(preset, "calibration"))
    return from_args(CalibrationSettings, args, base=base)


def yopo_from(args, preset: str | None = None) -> YopoConfig:
    return from_args(YopoConfig, args, base=preset_values(preset, "yopo"))


def yopo_flags(args) -> list[str]:
    """The YOPO flags given on the command line (to refuse them where they cannot act)."""
    return ["--" + k.replace("_", "-") for k in explicit(YopoConfig, args)]


def calibration_flags(args) -> list[str]:
    return ["--" + k.replace("_", "-") for k in explicit(CalibrationSettings, args)]


def layer_table(cal, file=None) -> None:
    """Per-layer mask of a :class:`yopo.core.calibration.Calibration`: shape, kept, total, density,
    output rows and input columns left empty, kept weights on an input-output path (when
    :func:`yopo.core.connectivity.add_connectivity` ran), then the totals and the warnings."""
    file = sys.stdout if file is None else file  # resolved per call: tests swap sys.stdout
    reports = getattr(cal, "layers", None) or {}
    has_eff = any(r.effective is not None for r in reports.values())
    rows = []
    for n, m in cal.masks.items():
        r = reports.get(n)
        kept, total = (r.kept, r.total) if r is not None else (int(m.sum()), m.numel())
        empty = f"{r.empty_rows}/{r.rows}" if r is not None else "-"
        empty_c = f"{r.empty_cols}/{r.cols}" if r is not None else "-"
        eff = str(r.effective) if r is not None and r.effective is not None else "-"
        note = " (excluded: dense)" if r is not None and r.excluded else ""
        rows.append((n, "x".join(map(str, m.shape)), kept, total, kept / total, empty, empty_c, eff, note))
    w = max(len(r[0]) for r in rows)
    head = (f"{'layer':{w}s}  {'shape':>16s}  {'kept':>10s}  {'total':>10s}  {'density':>8s}  {'empty rows':>11s}  "
            f"{'empty cols':>11s}" + (f"  {'effective':>10s}" if has_eff else ""))
    print(head, file=file)
    for n, shape, kept, total, dens, er, ec, eff, note in rows:
        print(f"{n:{w}s}  {shape:>16s}  {kept:>10d}  {total:>10d}  {dens:>8.4f}  {er:>11s}  {ec:>11s}"
              + (f"  {eff:>10s}" if has_eff else "") + note, file=file)
    alpha = getattr(cal, "alpha", None)
    settings = getattr(cal, "settings", None)
    how = (f"allocation {cal.mode}, ranking {settings.ranking}, alpha "
           f"{'per layer' if alpha is None else f'{alpha:.6g}'}") if settings is not None else ""
    if hasattr(cal, "pattern"):  # N:M (yopo.core.nm.NMCalibration)
        how = f"pattern {cal.pattern}" + (f", dense: {', '.join(cal.dense)}" if cal.dense else "")
    eff_s = getattr(cal, "effective_sparsity", None)
    print(f"{'total':{w}s}  {'':>16s}  {cal.kept:>10d}  {cal.total:>10d}  sparsity {cal.sparsity:.6f}"
          f"  (target {cal.target:.6f}; {how})"
          + (f"; effective sparsity {eff_s:.6f}" if eff_s is not None else ""), file=file)
    for msg in getattr(cal, "warnings", ()):
        print(f"warning: {msg}", file=file)
