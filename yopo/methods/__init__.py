"""Built-in scoring methods, one per module; importing this package registers them all.

* ``yopo`` (subpackage: the saliency and its NMF engine), ``magnitude``, ``random``: data-free
* ``snip``, ``grasp``, ``prospr``, ``iter_snip``: need data (gradient methods)
* ``synflow``: data-free, iterative
* ``xnet``, ``rreg``: data-free expander masks
* ``phew``, ``npb``: data-free path/node masks

Helpers shared by several methods live in ``yopo.methods.support`` (batches, score encodings,
schedules, layer structure, gradient helpers).

Every method scores the same weights: those of Conv1d/Conv2d/Conv3d and Linear modules (see
``yopo.core.layers``); biases and norm layers are never scored or pruned (they still take part in the
forward passes of the methods that run the model). Methods that need data declare
``data_free=False`` and take an ``(x, y)`` pair or an iterable of batches (``get_batch``); the
data-free ones receive ``data=None``. Methods that modify the model (gradient methods, SynFlow)
register ``mutates=True`` and work on a deep copy.

Mask-producing and iterative methods encode their result as scores; see
``yopo.methods.support.encoding`` (``native_mask`` / ``native_sparsity``).
"""
from . import (grasp, iter_snip, magnitude, npb, phew, prospr, random, rreg, snip, synflow,  # noqa: F401
               xnet, yopo)
from .support.batches import get_batch  # noqa: F401
from .support.encoding import native_mask, native_sparsity  # noqa: F401
