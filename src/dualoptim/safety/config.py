"""The options of the safety-alignment task, as typed dataclasses (:mod:`dualoptim.config`).

The unlearning section, the question/answer format and the tiny model are the LLM task's
(:mod:`dualoptim.llm.config`); this file adds where the prompts come from, how the target is made,
how the forget answers are sampled, the judge and the evaluation. Presets in
``dualoptim/configs/safety/`` (``safety-tiny``, ``safety-llama3-8b``) override these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from dualoptim.config import option
from dualoptim.llm.config import FinetuneSection, UnlearnSection
from dualoptim.llm.config import validate as _validate_llm
from dualoptim.llm.data import QAFormat
from dualoptim.llm.models import TinyModelConfig

__all__ = [
    "TASK",
    "CompletionSection",
    "DataSection",
    "EvalSection",
    "JudgeSection",
    "ModelSection",
    "SafetyConfig",
    "validate",
]

#: the task's name: its presets folder (``configs/safety``) and results.json's ``task``
TASK = "safety"
#: utilities OVR may use (``eval.ovr_utility``)
OVR_UTILITIES = ("Downstream AVG", "Benign ROUGE", "Benign ROUGE (held-out)")


@dataclass
class ModelSection:
    """Which model unlearns its harmful behaviour."""

    kind: str = option(
        '"tiny": train the CPU stand-in from scratch (benign Alpaca answers + compliant answers to harmful '
        'instructions); "pretrained": load name_or_path',
        "tiny",
    )
    name_or_path: str | None = option("hub id or folder of the (Alpaca-style) target model (kind pretrained)", None)
    dtype: str = option("dtype the pretrained model is loaded in: float32 | bfloat16 | float16", "float32")
    pad_token: str | None = option('pad with this token when the tokenizer has none ("eos"); null: require one', None)
    seed: int = option("seed of the tiny target's training", 0)
    tiny: TinyModelConfig = option("the tiny Llama and its training (kind tiny)", factory=TinyModelConfig)
    finetune: FinetuneSection = option(
        "fine-tune name_or_path Alpaca-style on the benign retain rows first, cached (kind pretrained)",
        factory=FinetuneSection,
    )
    harmful_train: int = option(
        "kind tiny: harmful instructions (from the refusal file) the target learns to answer compliantly; "
        "the forget set is drawn from them",
        600,
    )
    refusal_share: float = option(
        "kind tiny: share of those the target learns to refuse instead (its starting safety)", 0.0
    )


@dataclass
class DataSection:
    """Where the prompts come from and how they become tokens."""

    path: str | None = option("the safety data folder (null: the data root's safety/)", None)
    format: QAFormat = option("how an instruction/answer pair becomes text", factory=QAFormat)
    max_length: int = option("tokens per instruction + answer", 256)
    forget_size: int = option("harmful instructions in the forget set (the first of the refusal file)", 200)
    retain_size: int = option("benign Alpaca rows in the retain set (the rest are held out for utility)", 150)


@dataclass
class CompletionSection:
    """The model's own answers to the forget instructions, sampled before unlearning and cached:
    the forget answers of GA / NPO / ME-style losses (IDK-style losses use the safe refusals)."""

    temperature: float = option("sampling temperature (0: greedy)", 0.0)
    top_p: float = option("nucleus sampling mass (temperature > 0)", 1.0)
    max_new_tokens: int = option("longest completion", 64)
    batch_size: int = option("prompts per generation batch", 32)
    seed: int = option("sampling seed", 0)
    keep_refusals: bool = option(
        "keep completions the judge calls refusals in the forget set (false: only harmful ones are forgotten)", False
    )


@dataclass
class JudgeSection:
    """What decides whether an answer is a refusal (harmless)."""

    model: str | None = option(
        "hub id or folder of a refusal classifier (transformers text classification); null: the offline "
        "string classifier of dualoptim.safety.judge",
        None,
    )
    refusal_labels: list[str] = option("labels of judge.model that mean a refusal", factory=lambda: ["REJECTION"])
    fallback: bool = option(
        "when judge.model cannot be loaded, judge with the string classifier and say so in the results "
        "(false: an error)",
        False,
    )
    batch_size: int = option("answers per judge batch", 32)


@dataclass
class EvalSection:
    """Evaluation: answers to the harmful sets and XSTest, utility, OVR."""

    harmful_size: int = option("first N prompts of each harmful set (0: all)", 0)
    xstest_size: int = option("first N XSTest prompts of each label (0: all 250 safe, 200 unsafe)", 0)
    utility_size: int = option("benign rows for the Benign ROUGE utilities (retain and held-out)", 25)
    max_new_tokens: int = option("longest greedy answer", 64)
    batch_size: int = option("prompts per generation batch", 32)
    downstream_tasks: list[str] = option(
        "lm-eval tasks of the downstream utility (dualoptim.llm.downstream); empty: absent", factory=list
    )
    downstream_limit: int | None = option("examples per downstream task (null: all)", None)
    ovr_utility: str = option(
        "the utility OVR averages: Downstream AVG | Benign ROUGE | Benign ROUGE (held-out)", "Downstream AVG"
    )


@dataclass
class SafetyConfig:
    """A whole ``dualoptim safety`` run: every (loss, strategy, seed)."""

    model: ModelSection = option("the model to align", factory=ModelSection)
    data: DataSection = option("prompts and formats", factory=DataSection)
    completions: CompletionSection = option("the model's own forget answers", factory=CompletionSection)
    judge: JudgeSection = option("the refusal judge", factory=JudgeSection)
    eval: EvalSection = option("evaluation", factory=EvalSection)
    unlearn: UnlearnSection = option("unlearning (the LLM task's section)", factory=UnlearnSection)
    losses: list[str] = option("FORGET+RETAIN loss combinations", factory=lambda: ["IDK+GD", "NPO+GD"])
    strategies: list[str] = option(
        "strategies to run each loss with", factory=lambda: ["joint", "alternate", "alternate-2lr", "dual", "dual+"]
    )
    seeds: list[int] = option("unlearning seeds (data order)", factory=lambda: [0])
    cache_dir: str | None = option("cache of tiny models, tokenizers and completions (default: dualoptim.paths)", None)
    device: str = option("cpu | cuda | auto (cuda when available)", "auto")
    threads: int | None = option("torch CPU threads (null: torch's default)", None)


def validate(config: SafetyConfig) -> None:
    """Catch bad names and values before any compute (the LLM task checks the unlearning section)."""
    from types import SimpleNamespace

    from dualoptim.llm.config import DataSection as LLMData
    from dualoptim.llm.config import ModelSection as LLMModel

    if config.model.kind not in ("tiny", "pretrained"):
        raise ValueError(f"unknown model.kind {config.model.kind!r}; valid: tiny, pretrained")
    if config.model.kind == "pretrained" and not config.model.name_or_path:
        raise ValueError("model.kind 'pretrained' needs model.name_or_path")
    if not 0.0 <= config.model.refusal_share <= 1.0:
        raise ValueError(f"model.refusal_share must be in [0, 1], got {config.model.refusal_share}")
    for key in ("forget_size", "retain_size", "max_length"):
        if getattr(config.data, key) < 1:
            raise ValueError(f"data.{key} must be >= 1, got {getattr(config.data, key)}")
    if config.model.kind == "tiny" and config.model.harmful_train < config.data.forget_size:
        raise ValueError(
            f"model.harmful_train ({config.model.harmful_train}) must cover data.forget_size ({config.data.forget_size}): "
            "the tiny target must have learnt the behaviour it unlearns"
        )
    for section, keys in (("completions", ("max_new_tokens", "batch_size")), ("eval", ("max_new_tokens", "batch_size")),
                          ("judge", ("batch_size",))):  # fmt: skip
        for key in keys:
            if getattr(getattr(config, section), key) < 1:
                raise ValueError(f"{section}.{key} must be >= 1, got {getattr(getattr(config, section), key)}")
    if config.completions.temperature < 0 or not 0 < config.completions.top_p <= 1:
        raise ValueError(
            f"completions need temperature >= 0 and 0 < top_p <= 1, got {config.completions.temperature}, "
            f"{config.completions.top_p}"
        )
    for key in ("harmful_size", "xstest_size", "utility_size"):
        if getattr(config.eval, key) < 0:
            raise ValueError(f"eval.{key} must be >= 0, got {getattr(config.eval, key)}")
    if config.eval.ovr_utility not in OVR_UTILITIES:
        raise ValueError(f"unknown eval.ovr_utility {config.eval.ovr_utility!r}; valid: {', '.join(OVR_UTILITIES)}")
    if config.eval.downstream_tasks:
        try:
            from dualoptim.llm.downstream import check_tasks
        except ImportError:
            pass  # without the module the utility is reported absent, with the reason
        else:
            check_tasks(config.eval.downstream_tasks)  # an unknown lm-eval task name fails now
    if config.judge.model is not None and not config.judge.refusal_labels:
        raise ValueError("judge.refusal_labels must name at least one label of judge.model")
    # the LLM task's checks of losses, strategies, the unlearning section, device and threads, on a
    # stand-in with this task's model and format
    stand_in = SimpleNamespace(
        losses=config.losses, strategies=config.strategies, unlearn=config.unlearn, device=config.device,
        threads=config.threads, tasks=["1"], seeds=config.seeds,
        model=LLMModel(kind=config.model.kind, name_or_path=config.model.name_or_path, dtype=config.model.dtype,
                       pad_token=config.model.pad_token, seed=config.model.seed, tiny=config.model.tiny,
                       finetune=config.model.finetune),
        data=LLMData(format=config.data.format, max_length=config.data.max_length, eval_sets=["forget"]),
    )  # fmt: skip
    _validate_llm(stand_in)
