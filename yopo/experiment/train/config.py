"""Training configuration: :class:`TrainConfig` (CLI flags are generated from it) and the named
recipes of App. F (``cifar``, ``tinyimagenet``, ``imagenet``) plus a short ``quick`` one."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...core.config import opt, validate_fields
from ...models import INITS, width_kwargs
from ..data import AUGMENTS, DATASETS

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class Recipe:
    """Optimizer and schedule of a dataset family (SGD with momentum; AMP applies on GPU only)."""

    name: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # per-step cosine from lr to 0, no warmup
    step_size: int = 30  # schedule="step": multiply lr by gamma every step_size epochs
    gamma: float = 0.1
    amp: bool = True


RECIPES: dict[str, Recipe] = {
    # App. F: CIFAR-10/100 - SGD 0.9, wd 5e-4, cosine over 200 epochs, lr 0.1 (0.2 for WRN-28-10), bs 128, AMP
    "cifar": Recipe("cifar", 200, 128, 0.1),
    # Tiny-ImageNet - same optimizer, 200 epochs, bs 256, lr 0.2, cosine, AMP
    "tinyimagenet": Recipe("tinyimagenet", 200, 256, 0.2),
    # ImageNet - bs 256, 100 epochs, lr 0.1, StepLR, AMP (step every 30 epochs by 0.1)
    "imagenet": Recipe("imagenet", 100, 256, 0.1, schedule="step", step_size=30, gamma=0.1),
    # a short recipe for demos, smoke tests and small data (digits, MNIST-1D)
    "quick": Recipe("quick", 15, 64, 0.1),
}

DEFAULT_RECIPE = {"cifar10": "cifar", "cifar100": "cifar", "tinyimagenet": "tinyimagenet", "imagenet": "imagenet",
                  "imagefolder": "cifar", "digits": "quick", "mnist1d": "quick"}
DEFAULT_MODEL = {"digits": "cnn_digits", "mnist1d": "conv1d_mnist1d", "cifar10": "resnet20", "cifar100": "resnet20",
                 "imagefolder": "resnet20", "tinyimagenet": "cifar_resnet18", "imagenet": "resnet50"}


#: TrainConfig fields renamed or moved (old name -> where it is now); sweep files get this hint
RENAMED = {"init": "weight_init",
           "exclude": "[calibration] exclude (a calibration setting: CalibrationSettings)",
           "robust": "[calibration] robust (a calibration setting: CalibrationSettings)",
           "min_keep": "[calibration] min_keep (a calibration setting: CalibrationSettings)"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run besides the mask. ``None`` fields are filled by
    :meth:`resolved` from the dataset's default recipe (``RECIPES``) and model; ``num_classes``
    comes from the data. How scores become masks is a
    :class:`yopo.core.calibration.CalibrationSettings` (``run(..., calibration=...)``), not part of
    this config. Every rule below is checked when the config is built.
    """

    model: str | None = opt(None, "architecture (see `yopo models`); default depends on the dataset")
    model_width: float | None = opt(None, "scale the model's channels by this multiplier (CIFAR ResNets, VGGs, "
                                    "cnn_digits); default: the model's own width", low=0.0, low_open=True)
    dataset: str = opt("digits", "dataset (digits and mnist1d are offline demos)", DATASETS)
    data_root: str | None = opt(None, "dataset folder (ImageFolder train/ test/, or torchvision CIFAR root)")
    num_classes: int | None = opt(None, "classifier outputs; default: from the data", low=1)
    recipe: str | None = opt(None, "named recipe (App. F); default: cifar / tinyimagenet / imagenet / quick by dataset",
                             tuple(RECIPES))
    epochs: int | None = opt(None, "epochs; default from the recipe", low=1)
    batch_size: int | None = opt(None, "global batch size (split over DDP ranks); default from the recipe", low=1)
    lr: float | None = opt(None, "initial learning rate; default from the recipe (0.2 for WRN on CIFAR)", low=0.0,
                           low_open=True)
    momentum: float | None = opt(None, "SGD momentum; default from the recipe (0.9)", low=0.0, high=1.0)
    weight_decay: float | None = opt(None, "weight decay; default from the recipe (5e-4)", low=0.0)
    schedule: str | None = opt(None, "learning-rate schedule; default from the recipe", SCHEDULES)
    seed: int = opt(0, "seed of the init, the scoring method, data order and augmentation", low=0)
    weight_init: str = opt("kaiming_normal", "weight initialization of the model (the same in `yopo prune`, so a "
                           "family fits the model train builds)", INITS)
    subset: int | None = opt(None, "train on a class-balanced subset of this many training images", low=1)
    subset_seed: int = opt(0, "seed choosing the subset (kept fixed across training seeds)", low=0)
    test_subset: int | None = opt(None, "evaluate on a class-balanced subset of this many test images", low=1)
    augment: str = opt("auto", "augmentation; auto = the paper's for the dataset", AUGMENTS)
    image_size: int | None = opt(None, "resize images to this size when decoding (ImageNet: crop size)", low=1)
    device: str = opt("auto", "cpu, cuda, cuda:1, ... ; auto = cuda when available")
    amp: bool | None = opt(None, "mixed precision (GPU only); default: the recipe's")
    workers: int = opt(2, "loader processes (streamed ImageNet only)", low=0)
    channels_last: bool | None = opt(None, "NHWC memory format for image models (a speed setting: ResNet-20 train "
                                     "steps 1.2x faster on a 2-core AMD EPYC CPU); default: on for CPU training of "
                                     "models with 2-D convolutions")
    cache_dir: str | None = opt(None, "cache for decoded images (default $YOPO_CACHE or ~/.cache/yopo)")
    eval_every: int = opt(1, "evaluate on the test set every N epochs (and after the last)", low=1)
    progress: bool = opt(True, "show a tqdm progress bar")
    checkpoint: bool = opt(True, "write a checkpoint every epoch (when there is an output folder)")

    def __post_init__(self):
        validate_fields(self)
        # a width the model cannot take (the dataset's default model included) fails here, not after loading data
        width_kwargs(self.model or DEFAULT_MODEL[self.dataset], self.model_width)

    def resolved(self, num_classes: int | None = None) -> "TrainConfig":
        """A copy with every ``None`` default filled in (validated like any TrainConfig)."""
        recipe = self.recipe or DEFAULT_RECIPE[self.dataset]
        r = RECIPES[recipe]
        model = self.model or DEFAULT_MODEL[self.dataset]
        lr = self.lr
        if lr is None:
            lr = 0.2 if (recipe == "cifar" and model.startswith("wrn")) else r.lr
        return dataclasses.replace(
            self, model=model, recipe=recipe, epochs=r.epochs if self.epochs is None else self.epochs,
            batch_size=r.batch_size if self.batch_size is None else self.batch_size, lr=lr,
            momentum=r.momentum if self.momentum is None else self.momentum,
            weight_decay=r.weight_decay if self.weight_decay is None else self.weight_decay,
            schedule=self.schedule or r.schedule,
            num_classes=self.num_classes if self.num_classes is not None else num_classes)

    @property
    def recipe_obj(self) -> Recipe:
        return RECIPES[self.recipe or DEFAULT_RECIPE[self.dataset]]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
