"""Training: masked training from the same initialization the mask was computed on.

Stable API (imported by ``yopo sweep`` and the CLI)::

    from yopo.core.calibration import CalibrationSettings
    from yopo.experiment.train import TrainConfig, run, train

    cfg = TrainConfig(model="resnet20", dataset="cifar10", data_root="../shared/data/cifar10-jpg",
                      subset=10000, epochs=30, seed=0)
    result = run(cfg, method="yopo", sparsity=0.9, calibration=CalibrationSettings(allocation="global"),
                 out_dir="runs/r20-yopo-0.9", rank=7, iters=200)
    result["test_acc"], result["params_kept"], result["flops_kept"], result["calibration"]

* :class:`TrainConfig` - frozen dataclass of the run (model, dataset, data_root, num_classes,
  epochs, batch_size, lr, recipe, seed, weight_init, subset, device, amp, ...), validated when
  built; ``None`` fields come from the recipe (:data:`RECIPES`: ``cifar``, ``tinyimagenet``,
  ``imagenet``, ``quick``). How scores become masks is not in it: that is the one
  :class:`yopo.core.calibration.CalibrationSettings`.
* :func:`run` ``(cfg, *, method="yopo", sparsity=0.9, calibration=None, mode=None, masks=None,
  out_dir=None, resume=False, progress=True, **method_opts) -> dict`` - seed, build the model with
  ``cfg.weight_init``, score it once (``method_opts``: the method's options, e.g. YopoConfig fields),
  calibrate with ``calibration`` (``mode``: the paper's name of its allocation), apply the masks,
  train from that same init, and return the final metrics (``test_acc``, ``test_loss``,
  ``train_loss``, ``train_acc``, ``epochs``, ``time_s``, ``sparsity``, ``params``, ``params_kept``,
  ``flops``, ``flops_kept``, ``history``, ``calibration`` (per-layer diagnostics and effective
  sparsity), ...). **Accuracies are in percent** (0-100) here, in ``result.json``, in the printed
  output, in a sweep's store and in the reports.
* :func:`train` ``(model, data, cfg, out_dir=None, resume=False, hooks=()) -> dict`` - the loop
  alone, for a model that already carries its masks (see :func:`yopo.apply_masks`).
* :class:`Hook` - optional callbacks ``on_train_start(state)``, ``on_step_end(state)``,
  ``on_epoch_end(state, metrics)``, ``on_train_end(state, result)``; set ``state.stop = True``
  to stop after the current epoch.
"""
from .config import RECIPES, Recipe, TrainConfig
from .loop import Hook, TrainState, evaluate, train
from .pipeline import resolve_masks, run, seed_everything

__all__ = ["Hook", "RECIPES", "Recipe", "TrainConfig", "TrainState", "evaluate", "resolve_masks", "run",
           "seed_everything", "train"]
