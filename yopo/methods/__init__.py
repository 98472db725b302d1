"""Built-in scoring methods; importing this package registers them.

* ``basic``: yopo, magnitude, random (data-free)
* ``gradient``: snip, grasp, prospr, iter_snip (need data)
* ``synflow``: synflow (data-free, iterative)
* ``expander``: xnet, rreg (data-free expander masks)
* ``graph``: phew, npb (data-free path/node masks)

Every method scores the same weights: those of Conv1d/Conv2d/Conv3d and Linear modules (see
``yopo.layers``); biases and norm layers are never scored or pruned (they still take part in the
forward passes of the methods that run the model). Methods that need data declare
``data_free=False`` and take an ``(x, y)`` pair or an iterable of batches (``get_batch``); the
data-free ones receive ``data=None``. Methods that modify the model (gradient methods, SynFlow)
register ``mutates=True`` and work on a deep copy.

Mask-producing and iterative methods encode their result as scores; see ``yopo.methods.common``
(``native_mask`` / ``native_sparsity``).
"""
from . import basic, expander, gradient, graph, synflow  # noqa: F401
from .common import get_batch, native_mask, native_sparsity  # noqa: F401
