"""Helpers shared by several scoring methods, split by what they hold: ``batches`` (one batch from
the caller's data), ``encoding`` (iterative / mask-producing methods as scores, native masks),
``schedules`` (iterative sparsity schedules), ``structure`` (kernel views, the layer chain, expander
and graph helpers), and ``gradients`` (the gradient methods' shared steps). Option checks are declared on each
method's config (``opt(..., low=, choices=)``, see ``yopo.core.config``). Layer-budget allocation (ERK, apportionment) is in ``yopo.core.allocation``."""
