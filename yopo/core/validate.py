"""Parameter checks that fail with one line naming the bad value and what is allowed."""
from __future__ import annotations

import math
from collections.abc import Iterable


def check_choice(name: str, value, allowed: Iterable) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be an int")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}={value!r} is out of range; allowed: integers in [{lo}, {hi}]")
    return value


def check_sparsity(value, name: str = "sparsity") -> float:
    """Sparsity is the fraction of prunable weights that are zero: a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a float in [0, 1)")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r} is out of range; allowed: 0 <= {name} < 1")
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
