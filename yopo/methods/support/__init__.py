"""Helpers shared by several scoring methods, split by what they hold: ``batches`` (one batch from
the caller's data), ``encoding`` (iterative / mask-producing methods as scores, native masks),
``schedules`` (iterative sparsity schedules), ``structure`` (kernel views, the layer chain, expander
and graph helpers), ``gradients`` (the gradient methods' shared steps) and ``checks`` (option
checks). Layer-budget allocation (ERK, apportionment) is in ``yopo.core.allocation``."""
