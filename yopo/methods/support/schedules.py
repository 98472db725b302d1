"""Sparsity schedules of the iterative methods (SynFlow, iterative SNIP) and the check of their
common options."""
from __future__ import annotations

from ...core.validate import check_int, check_sparsity
from .encoding import MAX_ROUNDS


def exponential_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after round k = 1..K: ``1 - (1 - s)**(k/K)`` (density decays geometrically; the
    last round hits ``s`` exactly)."""
    return [1.0 - (1.0 - sparsity) ** (k / rounds) for k in range(1, rounds) ] + [sparsity]


def linear_schedule(sparsity: float, rounds: int) -> list[float]:
    return [sparsity * k / rounds for k in range(1, rounds + 1)]


SCHEDULES = {"exponential": exponential_schedule, "linear": linear_schedule}


def check_common(target_sparsity: float, rounds: int | None = None) -> None:
    check_sparsity(target_sparsity, "target_sparsity")
    if rounds is not None:
        check_int("iters", rounds, 1, MAX_ROUNDS)
