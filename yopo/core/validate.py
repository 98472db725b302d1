"""Parameter checks that fail with one line naming the bad value and what is allowed."""
from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable


def name_list(names, k: int = 4) -> str:
    """The first ``k`` names joined by commas, `` ...`` when there are more (warning texts)."""
    names = list(names)
    return ", ".join(names[:k]) + (" ..." if len(names) > k else "")


def check_choice(name: str, value, allowed: Iterable) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}{suggest(value, allowed)}")


def suggest(value, allowed: Iterable) -> str:
    """``"; did you mean 'resnet20'?"`` for the closest allowed value, else ``""``: the shortest
    allowed value that starts with ``value`` (``resnet2`` -> ``resnet20``, not the equally close
    ``resnet32``), else difflib's closest match (case-insensitive)."""
    names = {str(a).lower(): str(a) for a in allowed}
    v = str(value).lower()
    prefixed = sorted((n for n in names if n.startswith(v)), key=len) if v else []
    close = prefixed[:1] or difflib.get_close_matches(v, list(names), n=1, cutoff=0.6)
    return f"; did you mean {names[close[0]]!r}?" if close else ""


def as_real(value):
    """A Python number from a real scalar: int/float, numpy scalars (``np.float32``) and
    0-dim numpy arrays or torch tensors (via ``.item()``); anything else (bool, strings, arrays
    of more than one element) is returned unchanged for the caller to reject."""
    if getattr(value, "ndim", None) != 0 or not hasattr(value, "item") or isinstance(value, (int, float)):
        return value
    single = str(getattr(value, "dtype", "")).rsplit(".", 1)[-1] in ("float32", "float16", "bfloat16")
    value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if single:  # the shortest decimal of the float32 value: np.float32(0.9) means 0.9, not 0.89999997615
        import numpy as np

        return float(str(np.float32(value)))
    return value if isinstance(value, (int, float)) else float(value)


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be an int")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}={value!r} is out of range; allowed: integers in [{lo}, {hi}]")
    return value


def check_sparsity(value, name: str = "sparsity") -> float:
    """Sparsity is the fraction of prunable weights that are zero: a float in [0, 1). Numpy and
    torch scalars are accepted (:func:`as_real`); a percentage (``90``) is rejected with a hint."""
    raw, value = value, as_real(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={raw!r} must be a float in [0, 1)")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        # 90 or 99.5 is a percentage; 1.2 could be anything: no guess
        percent = 10.0 <= value < 100.0 or (1.0 < value < 10.0 and value.is_integer())
        hint = f"; did you mean {value / 100:g}?" if percent else ""
        raise ValueError(f"{name}={value!r} is out of range; allowed: 0 <= {name} < 1{hint}")
    return value


def check_float(name: str, value, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    value = float(value)
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and value > high
    if bad_low or bad_high:
        lb = "(" if low_open else "["
        raise ValueError(
            f"{name}={value!r} is out of range; allowed: {lb}{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}]"
        )
    return value
