"""Sparsity schedules of the iterative methods (SynFlow, iterative SNIP)."""
from __future__ import annotations


def exponential_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after round k = 1..K: ``1 - (1 - s)**(k/K)`` (density decays geometrically; the
    last round hits ``s`` exactly)."""
    return [1.0 - (1.0 - sparsity) ** (k / rounds) for k in range(1, rounds) ] + [sparsity]


def linear_schedule(sparsity: float, rounds: int) -> list[float]:
    return [sparsity * k / rounds for k in range(1, rounds + 1)]


SCHEDULES = {"exponential": exponential_schedule, "linear": linear_schedule}
