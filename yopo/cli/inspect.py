"""``yopo inspect FILE``: show what a family artifact holds, optionally the mask at a sparsity."""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass

from ..core.config import add_dataclass_args, from_args, opt, sparsity_rule, validate_fields
from ..core.nm import INDIVISIBLE
from .settings import add_calibration_args, calibration_from, layer_table


@dataclass(frozen=True)
class InspectArgs:
    file: str = opt(MISSING, "family artifact (.safetensors from `yopo prune`)", positional=True)
    sparsity: float | None = opt(None, "derive and describe the mask at this sparsity (no rescoring)",
                                 check=sparsity_rule)
    mask_out: str | None = opt(None, "with --sparsity or --pattern: also write that mask, bit-packed (for `yopo train "
                               "--mask`)")
    pattern: str | None = opt(None, "instead of --sparsity: the N:M mask (e.g. 2:4) re-thresholded from the stored "
                              "scores")
    nm_indivisible: str = opt("error", "with --pattern: a layer whose input dimension is not divisible by M is an "
                              "error, or left dense", INDIVISIBLE)

    def __post_init__(self):
        validate_fields(self)


def add_parser(sub, name):
    p = sub.add_parser(name, help="describe a family artifact; with --sparsity, print that mask",
                       description="Print the provenance of a family artifact written by `yopo prune` and, "
                       "with --sparsity, the per-layer mask derived from it (no rescoring). The mask uses the "
                       "calibration settings stored in the family; the calibration flags given here override them.")
    add_dataclass_args(p, InspectArgs)
    add_calibration_args(p, base="a flag not given takes the family's stored setting, not the default shown")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.family import Family
    from .settings import calibration_flags

    a = from_args(InspectArgs, args)
    fam = Family.load(a.file)
    meta = {k: v for k, v in fam.meta.items() if k != "fingerprint"}
    n = sum(s.numel() for s in fam.scores.values())
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(f"{len(fam.scores)} prunable layers, {n} weights, fingerprint {fam.meta['fingerprint']['hash']}")
    if a.pattern is not None:
        from ..core.nm import nm_calibrate
        if a.sparsity is not None:
            raise ValueError(f"--sparsity {a.sparsity} and --pattern {a.pattern} both set: the pattern fixes "
                             f"the sparsity; drop one")
        if calibration_flags(args):
            raise ValueError(f"{', '.join(calibration_flags(args))} cannot act on an N:M pattern (N of every M "
                             f"inputs by score); drop them")
        cal = nm_calibrate(fam, a.pattern, indivisible=a.nm_indivisible)
        layer_table(cal)
        settings = None
    elif a.sparsity is None:
        given = calibration_flags(args) + (["--mask-out"] if a.mask_out else [])
        if given:
            raise ValueError(f"{', '.join(given)} act on a mask: pass --sparsity or --pattern too")
        return 0
    else:
        if "--kept-scale" in calibration_flags(args) and not a.mask_out:
            raise ValueError("--kept-scale does not change the mask, only how training starts from it: it is "
                             "recorded in the mask file, so pass --mask-out too (or give it to `yopo train`)")
        settings = calibration_from(args, base=fam.calibration_settings)
        cal = fam.calibrate(a.sparsity, settings)
        layer_table(cal)
    if a.mask_out:
        from ..core.family import save_mask

        save_mask(a.mask_out, cal.masks, {"family": a.file, "sparsity": cal.target, "pattern": a.pattern,
                                          "calibration": None if settings is None else settings.to_dict(),
                                          "model": fam.meta.get("model"), "seed": fam.meta.get("seed")})
        print(f"wrote {a.mask_out}")
    return 0
