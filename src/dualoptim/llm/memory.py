r"""Memory estimate of a TOFU run per strategy, from the model config alone (``dualoptim tofu --dry-run``).

The parameter shapes come from the model's config: ``transformers`` builds the model on the
``meta`` device, which allocates nothing, so a 7B model is sized in seconds without its weights.
Per strategy the estimate adds up, in bytes (``docs/design.md`` §4.4):

* **weights**: :math:`P\,w` for :math:`P` parameters of :math:`w` bytes (``model.dtype``), plus the
  float32 master copies of bf16/fp16 parameters (:math:`4P`, automatic in every optimizer of
  ``dualoptim.optim``), plus a frozen copy :math:`P\,w` when a loss needs a reference model
  (NPO, DPO, KL);
* **gradients**: :math:`P\,w`;
* **optimizer states**: per parameter tensor, each moment float32 (4 bytes an element) or, for the
  8-bit strategies and tensors of at least 4,096 elements, one byte an element plus a float32
  absmax per block of 256; the moments a strategy keeps are listed in :data:`STATE_MOMENTS`;
* **LoRA** (``unlearn.lora.enabled``): the weights gain the float32 adapters (:math:`r (d_{in} +
  d_{out})` parameters per adapted linear layer), and gradients, optimizer states and master copies
  are those of the adapters alone: the frozen base has none;
* **activations**: what the backward pass keeps of one micro-batch of :math:`b` rows of :math:`s`
  tokens (hidden size :math:`h`, :math:`L` layers, vocabulary :math:`V`), after Korthikanti et al.
  (2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 2 with fused
  attention, which drops the :math:`5as/h` term): :math:`34\,s b h\,(w/2)` bytes per layer, plus the
  float32 logits and their gradient :math:`8\,s b V`; with gradient checkpointing only each layer's
  input, :math:`s b h w` per layer, plus one layer's full set. The joint strategy keeps the forget
  and the retain graph alive together (twice the activations).

With ``model.finetune.enabled`` the report adds the fine-tuning stage (TOFU's recipe, run before
unlearning on ``rows`` rows, 4,000 for TOFU's full set, or ``model.finetune.subset`` of them): full-weight AdamW (weights, float32
masters of bf16/fp16 weights, gradients, two float32 moments; LoRA: those of the adapters) and the
activations of one ``model.finetune.batch_size`` micro-batch; compute :math:`6 P T` FLOPs for
:math:`T \le` rows x epochs x ``data.max_length`` tokens (an upper bound: rows are shorter), given
as hours at 100 TFLOP/s sustained.

It is an estimate of what the tensors need, not of a process: the CUDA context (~0.5-1 GB),
allocator fragmentation and temporary buffers of an optimizer step come on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dualoptim.llm.config import TofuConfig

__all__ = ["STATE_MOMENTS", "TOFU_ROWS", "MemoryEstimate", "dry_run", "estimate", "finetune_estimate", "model_shapes",
           "render"]

#: rows of TOFU's full set, what the fine-tuning stage trains the target on
TOFU_ROWS = 4000

GIB = 1024**3
BLOCK, MIN_QUANTIZED = 256, 4096  # dualoptim.optim.quant.BLOCK_SIZE, MIN_QUANTIZED_NUMEL

#: strategy -> (Adam moments per parameter element, whether they are 8-bit), for the adam/adamw
#: families; with the sgd family the retain side keeps one float32 momentum instead (:func:`_moments`)
STATE_MOMENTS = {
    "joint": (2, False),  # one shared AdamW state
    "alternate": (2, False),
    "alternate-2lr": (2, False),
    "dual": (4, False),  # forget AdamW + retain AdamW
    "dual+": (6, False),  # base + forget residual + retain residual, two moments each
    "dual-8bit": (4, True),
    "dual+-8bit": (6, True),
    "dual+-ref": (6, False),  # the same moments, stepped as the reference code does
}


@dataclass
class MemoryEstimate:
    """Bytes of each part for one strategy."""

    strategy: str
    weights: int
    masters: int
    reference: int
    gradients: int
    states: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.masters + self.reference + self.gradients + self.states + self.activations


def model_shapes(config: TofuConfig) -> tuple[list[tuple[int, ...]], dict[str, Any]]:
    """Shapes of the model's (unique) parameters and its sizes, built on the meta device.

    With LoRA, ``sizes["lora_numels"]`` lists the element counts of the adapter tensors (A and B
    of every adapted linear layer)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if config.model.kind == "tiny":
        t = config.model.tiny
        model_config = LlamaConfig(
            vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
            num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_heads,
            max_position_embeddings=t.max_position_embeddings, tie_word_embeddings=True,
        )  # fmt: skip
    else:
        try:
            model_config = AutoConfig.from_pretrained(config.model.name_or_path)
        except OSError as error:
            raise FileNotFoundError(
                f"cannot read the config of model {config.model.name_or_path!r}: {error}"
            ) from error
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    shapes = [tuple(p.shape) for p in model.parameters()]  # tied weights appear once
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    sizes: dict[str, Any] = {
        "hidden": int(text.hidden_size),
        "layers": int(text.num_hidden_layers),
        "vocab": int(text.vocab_size),
    }
    lora = config.unlearn.lora
    if lora.enabled:
        targets = set(lora.target_modules)
        linears = [m for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets]  # fmt: skip
        sizes["lora_numels"] = [n for m in linears for n in (lora.r * m.in_features, m.out_features * lora.r)]
    return shapes, sizes


def _moment_bytes(numel: int, quantized: bool) -> int:
    if quantized and numel >= MIN_QUANTIZED:
        return numel + 4 * math.ceil(numel / BLOCK)
    return 4 * numel


def _moments(strategy: str, family: str) -> tuple[int, int]:
    """(Adam moments that may be 8-bit, float32 SGD momentum buffers) per element of a strategy."""
    moments, _ = STATE_MOMENTS[strategy]
    if family != "sgd" or strategy.startswith("dual+"):
        return moments, 0
    # sgd family: the retain side (and the shared state) is SGD with momentum, float32 always
    if strategy in ("joint", "alternate"):
        return 0, 1
    return 2, 1  # dual: forget Adam (8-bit in dual-8bit) + retain SGD momentum


def estimate(config: TofuConfig, shapes: list[tuple[int, ...]], sizes: dict[str, Any]) -> list[MemoryEstimate]:
    """The estimate of every strategy of ``config`` (see the module docstring)."""
    from dualoptim.llm.losses import UnlearningLoss

    width = {"float32": 4, "bfloat16": 2, "float16": 2}[config.model.dtype if config.model.kind == "pretrained" else "float32"]
    numels = [math.prod(shape) for shape in shapes]
    params = sum(numels)
    adapters = sizes.get("lora_numels") if config.unlearn.lora.enabled else None
    # what the optimizer steps: every weight, or (LoRA) the float32 adapters alone
    trained, trained_width = (adapters, 4) if adapters is not None else (numels, width)
    extra = 4 * sum(adapters) if adapters is not None else 0  # the adapters' own float32 weights
    needs_reference = any(UnlearningLoss(loss).needs_reference for loss in config.losses)
    b, s = config.unlearn.batch_size, config.data.max_length
    h, layers, vocab = sizes["hidden"], sizes["layers"], sizes["vocab"]
    per_layer = 34 * s * b * h * width // 2
    logits = 8 * s * b * vocab
    checkpointing = getattr(config.unlearn, "gradient_checkpointing", False)
    if checkpointing:
        activations = layers * s * b * h * width + per_layer + logits
    else:
        activations = layers * per_layer + logits
    out = []
    for strategy in config.strategies:
        if strategy not in STATE_MOMENTS:
            raise ValueError(f"no memory model for strategy {strategy!r}; known: {', '.join(STATE_MOMENTS)}")
        adam, sgd = _moments(strategy, config.unlearn.family)
        quantized = STATE_MOMENTS[strategy][1]
        states = sum(adam * _moment_bytes(n, quantized) + sgd * 4 * n for n in trained)
        out.append(
            MemoryEstimate(
                strategy=strategy,
                weights=params * width + extra,
                masters=4 * sum(trained) if trained_width < 4 else 0,
                reference=params * width + extra if needs_reference else 0,
                gradients=sum(trained) * trained_width,
                states=states,
                activations=activations * (2 if strategy == "joint" else 1),
            )
        )
    return out


def finetune_estimate(config: TofuConfig, shapes: list[tuple[int, ...]], sizes: dict[str, Any],
                      rows: int = TOFU_ROWS) -> dict[str, float]:  # fmt: skip
    """Bytes, optimizer steps, tokens and FLOPs of the fine-tuning stage (see the module docstring).

    ``rows``: the training set's size; with ``model.finetune.subset`` the target trains on that many
    of them (steps, tokens and FLOPs scale with it; the bytes do not)."""
    from dualoptim.llm.models import check_finetune_subset

    f = config.model.finetune
    if f.subset is not None:
        check_finetune_subset(f.subset, total=rows)
        rows = f.subset
    width = {"float32": 4, "bfloat16": 2, "float16": 2}[config.model.dtype]
    params = sum(math.prod(shape) for shape in shapes)
    trained = sum(sizes.get("lora_numels", [])) if f.lora.enabled and sizes.get("lora_numels") else params
    trained_width = 4 if trained != params else width
    b, s_len, h, layers, vocab = f.batch_size, config.data.max_length, sizes["hidden"], sizes["layers"], sizes["vocab"]
    activations = layers * (34 * s_len * b * h * width // 2) + 8 * s_len * b * vocab
    parts = {
        "weights": params * width + (4 * trained if trained != params else 0),
        "masters": 4 * trained if trained_width < 4 else 0,
        "gradients": trained * trained_width,
        "states": 2 * 4 * trained,
        "activations": activations,
    }
    steps = math.ceil(rows / b) * f.epochs
    tokens = rows * f.epochs * s_len
    # 6 P T: forward 2 P T and backward 4 P T (LoRA still runs the whole backward through the frozen base)
    flops = 6 * params * tokens
    return {**parts, "total": sum(parts.values()), "rows": rows, "steps": steps, "tokens": tokens, "flops": flops,
            "hours_at_100_tflops": flops / 100e12 / 3600}  # fmt: skip


def render(config: TofuConfig, shapes: list[tuple[int, ...]], sizes: dict[str, Any]) -> str:
    """The dry-run report: the model's size, then one row per strategy, in GiB."""
    rows = estimate(config, shapes, sizes)
    params = sum(math.prod(shape) for shape in shapes)
    model = config.model.name_or_path if config.model.kind == "pretrained" else "tiny Llama (model.tiny)"
    dtype = config.model.dtype if config.model.kind == "pretrained" else "float32"
    lines = [
        f"# memory estimate (dry run, no weights loaded): {model}",
        "",
        f"{params:,} parameters ({params / 1e9:.2f} B) in {dtype}; hidden {sizes['hidden']}, "
        f"{sizes['layers']} layers, vocabulary {sizes['vocab']:,}; micro-batch {config.unlearn.batch_size} x "
        f"{config.data.max_length} tokens; family {config.unlearn.family}"
        + (f"; LoRA r={config.unlearn.lora.r} on {', '.join(config.unlearn.lora.target_modules)}: "
           f"{sum(sizes.get('lora_numels', [])):,} trainable parameters" if config.unlearn.lora.enabled else "")
        + ".",
        "",
        "| strategy | weights | master copies | reference model | gradients | optimizer states | activations | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.weights, r.masters, r.reference, r.gradients, r.states, r.activations, r.total]
        lines.append(f"| {r.strategy} | " + " | ".join(f"{c / GIB:.2f}" for c in cells) + " |")
    lines += [
        "",
        "GiB. Master copies: float32 copies of bf16/fp16 parameters kept by the optimizers. Reference "
        "model: the frozen copy NPO, DPO and KL compare with. Activations: one micro-batch, "
        "Korthikanti et al. (2022) with fused attention, float32 logits; joint keeps two graphs. "
        "Not counted: the CUDA context, fragmentation, evaluation and temporary buffers "
        "(docs/design.md §4.4).",
        "",
    ]
    if config.model.kind == "pretrained" and config.model.finetune.enabled:
        f, ft = config.model.finetune, finetune_estimate(config, shapes, sizes)
        rows = f"{ft['rows']:,} TOFU rows" if f.subset is None else f"a subset of {ft['rows']:,} of the {TOFU_ROWS:,} TOFU rows"
        lines += [
            f"## fine-tuning stage (model.finetune.enabled: {rows}, {f.epochs} epochs, "
            f"batch {f.batch_size}{', LoRA' if f.lora.enabled else ''})",
            "",
            "| weights | master copies | gradients | AdamW states | activations | total |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(f"{ft[k] / GIB:.2f}" for k in ("weights", "masters", "gradients", "states", "activations", "total")) + " |",
            "",
            f"GiB. {ft['steps']:,} optimizer steps; at most {ft['tokens']:,} tokens (rows padded to {config.data.max_length}), "
            f"6 x parameters x tokens = {ft['flops']:.3g} FLOPs: {ft['hours_at_100_tflops']:.2f} h at 100 TFLOP/s sustained "
            "(scale by your hardware's). The target is fine-tuned once and cached; each task's retain model "
            "(Forget Quality's reference) costs the same per row on its retain rows"
            + (" (the subset's rows minus the task's forget rows)." if f.subset is not None else "."),
            "",
        ]
    return "\n".join(lines)


def dry_run(config: TofuConfig) -> str:
    """:func:`render` for ``config``, reading only the model config."""
    shapes, sizes = model_shapes(config)
    return render(config, shapes, sizes)
