"""What calibration left in a run's model, as stored in ``result.json`` and a sweep's results:
per-layer kept weights, empty rows / input columns, effective (on-path) weights and the warnings;
and the rule that a :class:`yopo.core.calibration.CollapseWarning` reaches the console once per run.
"""
from __future__ import annotations

import contextlib
import warnings


def calibration_record(cal) -> dict:
    """JSON-ready diagnostics of a :class:`yopo.core.calibration.Calibration` (call
    :func:`yopo.core.connectivity.add_connectivity` first for the effective counts)."""
    layers = {}
    for n, r in cal.layers.items():
        layers[n] = {"kept": r.kept, "total": r.total, "density": r.density, "forced": r.forced, "rows": r.rows,
                     "empty_rows": r.empty_rows, "cols": r.cols, "empty_cols": r.empty_cols, "excluded": r.excluded,
                     "effective": r.effective}
    return {"settings": cal.settings.to_dict(), "target": cal.target, "sparsity": cal.sparsity,
            "effective_sparsity": cal.effective_sparsity, "kept": cal.kept, "total": cal.total,
            "alpha": cal.alpha, "layers": layers, "warnings": list(cal.warnings)}


def with_connectivity(cal, model, input_shape=None):
    """``cal`` with the effective (on-path) counts of ``model`` filled in; the model is not changed."""
    from ...core.connectivity import add_connectivity

    return add_connectivity(cal, model, tuple(input_shape) if input_shape else None)


@contextlib.contextmanager
def recorded_warnings():
    """Collect every warning raised inside the block (shown later by :func:`show_warnings`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def show_warnings(caught) -> None:
    """Show each distinct warning of ``caught`` once, whatever was shown before: Python's default
    filter shows a warning once per code location *per process*, so in a sweep only the first run
    with an emptied layer would say so; this way every run does. The user's filters still apply
    (``-W error`` raises)."""
    seen = set()
    for w in caught:
        key = (w.category, str(w.message))
        if key not in seen:
            seen.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry={})


@contextlib.contextmanager
def warnings_once_per_run():
    """The warnings raised inside the block, each shown once (see :func:`show_warnings`)."""
    with recorded_warnings() as caught:
        yield
    show_warnings(caught)
