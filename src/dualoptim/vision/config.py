"""The options of the image-classification task, as typed dataclasses (:mod:`dualoptim.config`).

Defaults here are the embedded digits benchmark (``configs/vision/digits.yaml`` spells them out);
presets in ``dualoptim/configs/vision/`` override them by nesting the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dualoptim.config import option

__all__ = [
    "TASK",
    "DataConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "UnlearnConfig",
    "VisionConfig",
]

#: the task's name: its presets folder (``configs/vision``) and results.json's ``task``
TASK = "vision"
ALL = ("FT", "GA", "NegGrad+", "RL", "SalUn", "SCRUB", "SFRon")


@dataclass
class DataConfig:
    dataset: str = option("digits | fashion-mnist | cifar10 | cifar100 | svhn | tiny-imagenet", "digits")
    root: str | None = option(
        "folder holding the data sets (default: dualoptim.paths.default_data_root())", None
    )
    train_subset: int | None = option(
        "use this many training examples (a fixed random subset); None = all", None
    )
    test_subset: int | None = option("use this many test examples (a fixed random subset); None = all", None)
    validation_fraction: float = option(
        "share of each class held out of the training set before the forget set is drawn (0: none)", 0.0
    )
    forget: str = option("how the forget set is chosen: random | class | indices", "random")
    forget_fraction: float | None = option("random: share of the training set to forget, in (0, 1)", 0.1)
    forget_count: int | None = option("random: number of examples to forget (overrides the fraction)", None)
    forget_class: int | None = option("class: the label whose examples are all forgotten", None)
    forget_indices: str | None = option("indices: file of training-set indices (JSON list or integers)", None)


@dataclass
class ModelConfig:
    arch: str = option("small-cnn | resnet18", "small-cnn")
    width: int = option("channels of the first stage", 16)
    weights: str | None = option(
        "pre-trained weights of a torchvision model (swin-t: DEFAULT = ImageNet-1k); None = random init", None
    )
    checkpoint: str | None = option("a trained original model (state dict); None = train one (cached)", None)


@dataclass
class TrainConfig:
    """How the original (whole training set) and the retrained references (retain set) are trained."""

    epochs: int = option("training epochs", 30)
    lr: float = option("initial learning rate", 0.05)
    momentum: float = option("SGD momentum", 0.9)
    weight_decay: float = option("weight decay (SGD: coupled; AdamW: decoupled)", 5e-4)
    batch_size: int = option("mini-batch size", 64)
    seed: int = option("seed of the original model's training (retrains use the run seed)", 0)
    optimizer: str = option("sgd | adamw", "sgd")
    lr_schedule: str = option("cosine (decay to 0) | step (x gamma at each milestone epoch)", "cosine")
    milestones: list[int] = option("step schedule: epochs at which the rate is multiplied by gamma", factory=list)
    gamma: float = option("step schedule: the factor at each milestone", 0.1)
    augment: bool = option("random crop (4-pixel zero padding) and horizontal flip of training images", False)


@dataclass
class ScheduleConfig:
    """Unset fields (None) inherit: global schedule < the method's published defaults < per-method values."""

    outer_iterations: int | None = option("outer iterations of the loop", None)
    forget_steps: int | str | None = option(
        "forget steps per outer iteration, or 'pass' (one full pass over D_f)", None
    )
    retain_steps: int | str | None = option(
        "retain steps per outer iteration, or 'pass' (one full pass over D_r)", None
    )


@dataclass
class MethodConfig:
    """Per-method overrides: hyper-parameters, schedule and learning rates."""

    options: dict[str, Any] = option("hyper-parameters of the method (its dataclass fields)", factory=dict)
    schedule: ScheduleConfig = option(
        "schedule of this method (unset fields: the global schedule)", factory=ScheduleConfig
    )
    forget_lr: dict[str, float] = option(
        "strategy -> forget learning rate (unset: unlearn.optim.forget_lr)", factory=dict
    )
    retain_lr: dict[str, float] = option(
        "strategy -> retain learning rate (unset: unlearn.optim.retain_lr)", factory=dict
    )


@dataclass
class OptimConfig:
    """Optimizer settings; learning rates are per strategy, forget rates tuned by ``dualoptim sweep``."""

    forget_lr: dict[str, float] = option(
        "strategy -> forget learning rate",
        factory=lambda: {"joint": 0.01, "alternate": 0.01, "dual": 1e-3, "dual+": 1e-3},
    )
    retain_lr: dict[str, float] = option(
        "strategy -> retain learning rate (fixed, as in the papers)",
        factory=lambda: {"joint": 0.01, "alternate": 0.01, "dual": 0.01, "dual+": 1e-3},
    )
    family: str = option("the pre-training optimizer: sgd | adamw | adam (retain side, shared state)", "sgd")
    momentum: float = option("SGD momentum (joint, alternate, dual retain)", 0.9)
    weight_decay: float = option("SGD weight decay", 5e-4)
    forget_betas: list[float] = option("AdamW betas of the dual forget side", factory=lambda: [0.9, 0.999])
    forget_weight_decay: float = option("AdamW decoupled weight decay of the dual forget side", 0.05)
    plus_betas: list[float] = option(
        "DualOptimPlus betas (delta1, delta2, base1, base2)", factory=lambda: [0.9, 0.95, 0.9, 0.95]
    )
    plus_weight_decay: float = option("DualOptimPlus decoupled weight decay", 0.0)


@dataclass
class UnlearnConfig:
    batch_size: int = option("mini-batch size of forget and retain batches", 64)
    schedule: ScheduleConfig = option(
        "default schedule",
        factory=lambda: ScheduleConfig(outer_iterations=3, forget_steps="pass", retain_steps="pass"),
    )
    optim: OptimConfig = option("optimizer settings", factory=OptimConfig)
    methods: dict[str, MethodConfig] = option(
        "method name -> overrides",
        factory=lambda: {"SFRon": MethodConfig(schedule=ScheduleConfig(outer_iterations=12))},
    )
    curve_points: int = option("evaluations along each run for the stability plot", 4)
    curve_examples: int = option(
        "examples per set used for the curve evaluations (final metrics use all)", 2000
    )
    mia_svc: bool = option("also report the SVC MIA-efficacy of the SalUn paper (MIA-SVC)", False)


@dataclass
class VisionConfig:
    """A whole ``dualoptim bench`` run: every (method, strategy, seed)."""

    methods: list[str] = option("methods to run", factory=lambda: list(ALL))
    strategies: list[str] = option(
        "strategies to run each method with",
        factory=lambda: ["joint", "alternate", "dual", "dual+", "dual-8bit", "dual+-8bit"],
    )
    seeds: list[int] = option(
        "seeds: each decides a forget set, a retrained reference and the unlearning randomness",
        factory=lambda: [0, 1, 2, 3, 4],
    )
    data: DataConfig = option("data", factory=DataConfig)
    model: ModelConfig = option("model", factory=ModelConfig)
    train: TrainConfig = option("training of the original and retrained models", factory=TrainConfig)
    unlearn: UnlearnConfig = option("unlearning", factory=UnlearnConfig)
    cache_dir: str | None = option(
        "cache of trained models (default: dualoptim.paths.default_cache_dir())", None
    )
    device: str = option(
        "where models and data live: cpu | cuda | cuda:N | auto (cuda when available)", "auto"
    )
    threads: int | None = option("torch CPU threads (null: torch's default)", None)
    jobs: int = option(
        "worker processes running independent runs in parallel (each GPU of a multi-GPU machine gets one in turn)", 1
    )
    executor: str = option(
        "where jobs > 1 runs: processes (local workers) | submitit (SLURM jobs; local subprocesses without SLURM)",
        "processes",
    )
    executor_options: dict[str, Any] = option(
        "submitit parameters, e.g. {slurm_partition: gpu, timeout_min: 600, gpus_per_node: 1}", factory=dict
    )
