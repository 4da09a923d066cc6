"""The options of the diffusion task (class-wise unlearning of class-conditional models), as typed dataclasses.

Defaults are the CPU Fashion-MNIST benchmark (``configs/diffusion/fashion-mnist-ddpm.yaml`` spells
them out); the GPU presets ``ddpm-cifar10`` and ``dit-imagenet`` carry the papers' settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dualoptim.config import option

__all__ = [
    "TASK",
    "ClassifierConfig",
    "DataConfig",
    "DiffusionConfig",
    "EvalConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "SampleConfig",
    "TrainConfig",
    "UnlearnConfig",
]

#: the task's name: its presets folder (``configs/diffusion``) and results.json's ``task``
TASK = "diffusion"
ALL = ("SA", "SalUn", "SFRon")


@dataclass
class DataConfig:
    dataset: str = option("fashion-mnist | digits | cifar10 | imagenet", "fashion-mnist")
    root: str | None = option("folder holding the data sets (default: dualoptim.paths.default_data_root())", None)
    image_size: int = option("images are resized to this side (pixels) before training", 16)
    train_subset: int | None = option("use this many training images (a fixed random subset); None = all", None)


@dataclass
class ModelConfig:
    arch: str = option("unet (diffusers UNet2DModel, trained here) | dit (pretrained DiTTransformer2DModel)", "unet")
    channels: list[int] = option("UNet: channels of each resolution level", factory=lambda: [32, 64, 64])
    attention: list[bool] = option("UNet: self-attention at each level", factory=lambda: [False, False, False])
    layers_per_block: int = option("UNet: residual blocks per level", 1)
    dropout: float = option("UNet: dropout of the residual blocks", 0.0)
    norm_groups: int = option("UNet: groups of the group norms", 8)
    checkpoint: str | None = option("a trained model (file written by this task); None = train one (cached)", None)
    pretrained: str = option("DiT: hub id or local folder of the pretrained transformer", "facebook/DiT-XL-2-256")
    vae: str = option("DiT: hub id or local folder of the SD VAE (latents x 0.18215)", "stabilityai/sd-vae-ft-ema")


@dataclass
class TrainConfig:
    """Pre-training of the class-conditional UNet (the original model every run unlearns from)."""

    steps: int = option("optimizer steps", 2000)
    batch_size: int = option("mini-batch size", 128)
    lr: float = option("Adam learning rate (linear warm-up over the first 5% of steps)", 2e-3)
    ema_decay: float = option("decay of the exponential moving average of the weights (sampled and unlearned)", 0.995)
    cond_drop: float = option("probability of replacing a label by the null label (classifier-free guidance)", 0.1)
    timesteps: int = option("diffusion steps T of the linear beta schedule", 1000)
    beta_start: float = option("first beta of the linear schedule", 1e-4)
    beta_end: float = option("last beta of the linear schedule", 0.02)
    seed: int = option("seed of the pre-training", 0)


@dataclass
class SampleConfig:
    ddim_steps: int = option("DDIM sampling steps (deterministic, eta 0)", 20)
    guidance: float = option("classifier-free guidance w: eps = (1 + w) eps(x, c) - w eps(x, null)", 2.0)
    batch_size: int = option("images generated per forward pass", 256)


@dataclass
class ClassifierConfig:
    """The project's classifier of the same data: FA and the classifier-feature Fréchet distance."""

    epochs: int = option("training epochs", 3)
    width: int = option("channels of the first convolution", 32)
    lr: float = option("Adam learning rate", 2e-3)
    batch_size: int = option("mini-batch size", 128)
    checkpoint: str | None = option("a trained classifier (file written by this task); None = train one (cached)", None)


@dataclass
class EvalConfig:
    forget_samples: int = option("images generated for the forgotten class (FA)", 200)
    kept_samples: int = option("images generated per kept class (FD/FID and the kept-class accuracy)", 40)
    real_per_class: int = option("real training images per class the distance compares against", 400)
    distance: str = option("fd: Fréchet distance in the classifier's features | fid: Inception FID (torchmetrics)", "fd")
    fid_weights: str | None = option("local file of the FID Inception weights (torch-fidelity's pt_inception-2015-12-05)", None)
    fid_fallback: bool = option("distance fid without its weights file: fall back to fd instead of failing", False)
    grid_classes: int = option("kept classes shown beside the forgotten one in the sample grids", 3)
    grid_images: int = option("images per class in the sample grids", 6)


@dataclass
class MethodConfig:
    """Per-method overrides: hyper-parameters (per strategy too), iterations and learning rates."""

    options: dict[str, Any] = option("hyper-parameters of the method (its dataclass fields)", factory=dict)
    strategy_options: dict[str, dict[str, Any]] = option(
        "strategy -> hyper-parameters for that strategy only (SFRon+DualOptim: forget_alpha 1)", factory=dict
    )
    iterations: int | None = option("iterations (one forget and one retain step each); unset: unlearn.iterations", None)
    forget_lr: dict[str, float] = option("strategy -> forget learning rate (unset: unlearn.optim.forget_lr)", factory=dict)
    retain_lr: dict[str, float] = option("strategy -> retain learning rate (unset: unlearn.optim.retain_lr)", factory=dict)


@dataclass
class OptimConfig:
    """Adam on both sides (the diffusion models are pre-trained with Adam); rates per strategy."""

    forget_lr: dict[str, float] = option(
        "strategy -> forget learning rate (alternate: equal to its retain rate, the reference's one Adam at "
        "one rate; alternate-2lr: a forget rate of its own)",
        factory=lambda: {"joint": 1e-4, "alternate": 1e-4, "dual": 1e-4, "dual+": 1e-4},
    )
    retain_lr: dict[str, float] = option(
        "strategy -> retain learning rate",
        factory=lambda: {"joint": 1e-4, "alternate": 1e-4, "dual": 1e-4, "dual+": 1e-4},
    )
    family: str = option("the pre-training optimizer: adam (both sides of dual, the shared state)", "adam")
    betas: list[float] = option("Adam betas of the retain side and of the shared state", factory=lambda: [0.9, 0.999])
    weight_decay: float = option("Adam (L2) weight decay of the retain side and the shared state", 0.0)
    forget_betas: list[float] = option("Adam betas of the dual forget side", factory=lambda: [0.9, 0.999])
    forget_weight_decay: float = option("Adam (L2) weight decay of the dual forget side", 0.0)
    plus_betas: list[float] = option("DualOptimPlus betas (delta1, delta2, base1, base2)", factory=lambda: [0.9, 0.95, 0.9, 0.95])
    plus_weight_decay: float = option("DualOptimPlus decoupled weight decay", 0.0)


@dataclass
class UnlearnConfig:
    forget_classes: list[int | str] = option("classes to forget, one run each (index or name)", factory=lambda: [1, 2, 8])
    iterations: int = option("iterations: each one forget step then one retain step (the 1:1 schedule)", 60)
    batch_size: int = option("mini-batch size of forget and retain batches", 64)
    optim: OptimConfig = option("optimizer settings", factory=OptimConfig)
    methods: dict[str, MethodConfig] = option("method name -> overrides", factory=dict)


@dataclass
class DiffusionConfig:
    """A whole ``dualoptim diffusion`` run: every (forgotten class, method, strategy, seed)."""

    methods: list[str] = option("methods to run", factory=lambda: list(ALL))
    strategies: list[str] = option("strategies to run each method with", factory=lambda: ["alternate", "dual", "dual+"])
    seeds: list[int] = option("seeds of the unlearning runs (each forgotten class runs with each seed)", factory=lambda: [0])
    data: DataConfig = option("data", factory=DataConfig)
    model: ModelConfig = option("the class-conditional denoiser", factory=ModelConfig)
    train: TrainConfig = option("pre-training of the original model", factory=TrainConfig)
    sample: SampleConfig = option("sampling", factory=SampleConfig)
    classifier: ClassifierConfig = option("the classifier of FA and FD", factory=ClassifierConfig)
    eval: EvalConfig = option("evaluation", factory=EvalConfig)
    unlearn: UnlearnConfig = option("unlearning", factory=UnlearnConfig)
    cache_dir: str | None = option("cache of trained models (default: dualoptim.paths.default_cache_dir())", None)
    device: str = option("where models and data live: cpu | cuda | cuda:N | auto (cuda when available)", "auto")
    threads: int | None = option("torch CPU threads (null: torch's default)", None)
