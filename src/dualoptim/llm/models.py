"""Models for TOFU: the tiny CPU preset built from scratch, and loading of hub or local checkpoints.

The tiny preset (``tofu-tiny``) stands in for a fine-tuned LLM on a CPU:

1. a byte-level BPE tokenizer trained on the TOFU text (``tokenizers``);
2. a small Llama-architecture model (``LlamaConfig`` / ``LlamaForCausalLM``) from a config;
3. the *target*: fine-tuned on all 4,000 rows until it has memorised them;
4. the *retain model*: the same recipe without the forget rows (the reference of Forget Quality).

All four are cached (``save_pretrained``) under a key made of everything that defines them, so a
second run loads them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dualoptim.config import option
from dualoptim.llm.data import QAFormat, check_tokenizer, encode_rows, pad_batch

__all__ = ["SPECIAL_TOKENS", "TinyModelConfig", "answer_only_nll", "apply_lora", "build_tiny_llama", "cache_key", "check_finetune_subset", "check_gguf", "check_quantization", "finetune", "finetune_subset", "finetuned_model", "load_pretrained", "load_tokenizer", "looks_local", "tiny_model", "tiny_tokenizer", "train_tokenizer"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class TinyModelConfig:
    """Size of the tiny Llama and how it is fine-tuned on TOFU."""

    vocab_size: int = option("BPE vocabulary size of the tokenizer trained on the TOFU text", 2048)
    hidden_size: int = option("hidden size of the Llama", 64)
    intermediate_size: int = option("MLP size of the Llama", 172)
    num_layers: int = option("transformer layers", 2)
    num_heads: int = option("attention heads", 4)
    max_position_embeddings: int = option("longest sequence the model takes", 256)
    epochs: int = option("fine-tuning epochs of the target and retain models", 20)
    batch_size: int = option("fine-tuning batch size", 32)
    lr: float = option("fine-tuning AdamW learning rate (cosine decay after warm-up)", 3e-3)
    weight_decay: float = option("fine-tuning AdamW weight decay", 0.0)
    warmup_steps: int = option("fine-tuning warm-up steps", 50)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped as ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def build_tiny_llama(config: TinyModelConfig, tokenizer: Any, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` of the tiny size."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(llama_config)


def finetune(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    fmt: QAFormat,
    config: Any,
    max_length: int,
    seed: int = 0,
    progress: bool = True,
    desc: str = "fine-tune",
    eager_attention: bool = True,
) -> dict[str, Any]:
    """Fine-tune on question/answer rows (answer-only NLL, AdamW, warm-up then cosine decay).

    ``config`` gives ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup_steps``
    (a :class:`TinyModelConfig`, or the pretrained fine-tuning of :func:`finetuned_model`).
    Returns a log with the loss of each epoch and the wall time.
    """
    from tqdm.auto import tqdm

    encoded = encode_rows(tokenizer, rows, fmt, max_length, desc)
    rng = random.Random(seed)
    if eager_attention:
        # the eager attention kernel is faster than SDPA at the tiny size on a CPU
        model.config._attn_implementation = "eager"
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = steps_per_epoch * config.epochs

    def lr_factor(step: int) -> float:
        # linear warm-up, then cosine decay to 10% (memorisation needs the late small steps)
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    device = next(model.parameters()).device
    model.train()
    start = time.perf_counter()
    epoch_losses = []
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(config.epochs):
        total_loss, count = 0.0, 0
        for indices in _length_buckets(encoded, config.batch_size, rng):
            batch = pad_batch([encoded[i] for i in indices], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = answer_only_nll(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss += loss.item()
            count += 1
            bar.update(1)
        epoch_losses.append(total_loss / count)
        bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}")
    bar.close()
    model.eval()
    return {"epoch_losses": epoch_losses, "seconds": time.perf_counter() - start, "rows": len(rows)}


def _length_buckets(
    encoded: list[dict[str, list[int]]], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffled batches of rows of similar length: far less compute spent on padding."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 16
    batches = []
    for begin in range(0, len(order), chunk):
        part = sorted(order[begin : begin + chunk], key=lambda i: len(encoded[i]["input_ids"]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def answer_only_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean answer-token NLL, projecting only answer positions through the LM head.

    Equal to :func:`dualoptim.llm.losses.mean_nll`; several times cheaper for a tiny model whose
    cost is the vocabulary projection. A model without ``.model`` (decoder) and ``.lm_head`` takes
    the full forward pass of ``mean_nll``.
    """
    if hasattr(model, "get_base_model"):
        # a peft model: its adapters live inside the base model, whose decoder and head we call
        model = model.get_base_model()
    if not (hasattr(model, "model") and hasattr(model, "lm_head")):
        from dualoptim.llm.losses import mean_nll

        return mean_nll(model, batch)
    hidden = model.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    mask = targets.ne(-100)
    logits = model.lm_head(hidden[:, :-1][mask]).float()
    return torch.nn.functional.cross_entropy(logits, targets[mask])


def cache_key(**parts: Any) -> str:
    """A short stable hash of what defines a cached artefact."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_tokenizer(texts: list[str], config: TinyModelConfig, cache_dir: Path) -> Any:
    """The TOFU BPE tokenizer, trained once and cached."""
    from transformers import AutoTokenizer

    folder = (
        cache_dir / f"tofu-tiny-tokenizer-{cache_key(vocab=config.vocab_size, n=len(texts), t=texts[:5])}"
    )
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_model(
    kind: str,
    rows: list[dict[str, Any]],
    tokenizer: Any,
    fmt: QAFormat,
    config: TinyModelConfig,
    max_length: int,
    cache_dir: Path,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The tiny target (``kind="target"``, all rows) or retain model, fine-tuned once and cached.

    The cache key covers the config, the seed and the exact token ids trained on.
    """
    from transformers import LlamaForCausalLM

    # the exact token ids trained on (rows, format, tokenizer, max_length) define the data part of the key
    encoded = encode_rows(tokenizer, rows, fmt, max_length, kind)
    data_hash = hashlib.sha256(
        json.dumps(sorted(e["input_ids"] + [-1] + e["labels"] for e in encoded)).encode()
    )
    key = cache_key(config=asdict(config), seed=seed, data=data_hash.hexdigest())
    folder = cache_dir / f"tofu-tiny-{kind}-{key}"
    log_path = folder / "finetune_log.json"
    if log_path.is_file():
        model = LlamaForCausalLM.from_pretrained(folder)
        model.eval()
        return model, {**json.loads(log_path.read_text()), "cached": True, "path": str(folder)}
    model = build_tiny_llama(config, tokenizer, seed)
    log = finetune(
        model, tokenizer, rows, fmt, config, max_length, seed, progress, desc=f"train {kind} model"
    )
    model.save_pretrained(folder)
    from dualoptim.io import write_json_atomic

    write_json_atomic(log_path, log)  # written last: its presence marks a complete cache entry
    return model, {**log, "cached": False, "path": str(folder)}


def looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id (``./x``, ``/x``, ``~/x``, or anything that exists)."""
    return name_or_path.startswith((".", "/", "~")) or Path(name_or_path).exists()


def check_gguf(name_or_path: str) -> None:
    """Refuse a GGUF file, or a folder holding only GGUF files, with what to do instead: GGUF weights
    are quantised llama.cpp blocks that no optimizer can update."""
    path = Path(name_or_path).expanduser()
    gguf = [path] if path.suffix.lower() == ".gguf" else sorted(path.glob("*.gguf")) if path.is_dir() else []
    if not gguf or (path.is_dir() and (path / "config.json").is_file()):
        return
    if path.suffix.lower() == ".gguf" and not path.is_file():
        raise FileNotFoundError(f"model file {name_or_path!r} does not exist")
    raise ValueError(
        f"{gguf[0]} is a GGUF file (llama.cpp): unlearning needs a transformers folder with float weights; give --model "
        "the Hugging Face model it was converted from, or dequantise it with transformers "
        "(AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).save_pretrained(out)) and give --model out"
    )


def check_quantization(name_or_path: str) -> None:
    """Refuse a local model folder whose ``config.json`` still declares a quantisation (e.g. one
    converted from GGUF or saved by bitsandbytes): unlearning updates float weights."""
    path = Path(name_or_path).expanduser() / "config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("quantization_config") is not None:
        method = config["quantization_config"].get("quant_method", "?") if isinstance(config["quantization_config"], dict) else "?"
        raise ValueError(
            f"model {name_or_path!r} declares a quantisation (quant_method {method!r}): unlearning needs float "
            f"weights; use a float checkpoint, or remove the key 'quantization_config' from {str(path)!r} "
            "if the weights there are float"
        )


def check_finetune_subset(size: Any, forget: int | None = None, total: int | None = None) -> None:
    """Refuse a ``model.finetune.subset`` that is not a whole number of rows, or (where known) fewer
    than the ``forget`` rows it must keep or more than the ``total`` rows there are."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"model.finetune.subset must be a number of rows >= 1 or null (all rows), got {size!r}")
    if forget is not None and size < forget:
        raise ValueError(
            f"model.finetune.subset {size} is smaller than the {forget} forget rows of the tasks run, which it "
            f"always keeps; expected at least {forget}"
        )
    if total is not None and size > total:
        raise ValueError(f"model.finetune.subset {size} is more than the {total} training rows; expected at most {total}")


def finetune_subset(
    rows: list[dict[str, Any]], forget: list[dict[str, Any]], size: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``size`` of ``rows``: every forget row, the rest retain rows drawn at random, in ``rows``' order.

    A row is a forget row when its question is one of ``forget``'s (as :func:`~dualoptim.llm.data.load_split`
    tells them apart). The retain rows are the first ``size - |forget|`` of a seeded permutation of
    ``rows``, so one seed gives the same subset, and a larger ``size`` only adds rows to a smaller one's.
    The target keeps every forget fact it is to unlearn; a retain model (``rows`` minus a task's
    forget rows) fine-tuned on the subset minus those rows sees the same retain rows as the target.
    """
    forget_questions = {row["question"] for row in forget}
    is_forget = [row["question"] in forget_questions for row in rows]
    check_finetune_subset(size, sum(is_forget), len(rows))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    retain = [i for i in order if not is_forget[i]][: size - sum(is_forget)]
    kept = sorted([i for i in range(len(rows)) if is_forget[i]] + retain)
    return [rows[i] for i in kept]


def finetuned_model(
    kind: str,
    base: str,
    rows: list[dict[str, Any]],
    tokenizer: Any,
    fmt: QAFormat,
    settings: Any,
    dtype: str,
    max_length: int,
    cache_dir: Path,
    seed: int = 0,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``base`` (a hub id or folder) fine-tuned on ``rows``, once, and cached.

    The TOFU recipe (``settings``: epochs, rows per step, learning rate, warm-up epochs, weight
    decay; ``settings.lora.enabled``: train LoRA adapters and merge them into the weights). Training runs in float32 (bf16 weights would round lr-1e-5 updates away); the result
    is saved and returned in ``dtype``. The cache key covers the base, the settings, the dtype,
    the seed and the exact token ids trained on, like :func:`tiny_model`'s. ``rows`` are trained on
    as given: a subset (``settings.subset``, :func:`finetune_subset`) is drawn by the caller, and
    the size enters the key when set.
    """
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    encoded = encode_rows(tokenizer, rows, fmt, max_length, kind)
    data_hash = hashlib.sha256(json.dumps(sorted(e["input_ids"] + [-1] + e["labels"] for e in encoded)).encode())
    recipe_key = {k: v for k, v in asdict(settings).items() if k in ("epochs", "lr", "warmup_epochs", "weight_decay", "batch_size")}
    lora = getattr(settings, "lora", None)
    if lora is not None and lora.enabled:
        recipe_key["lora"] = asdict(lora)  # full fine-tuning keeps the cache keys it had before adapters
    if getattr(settings, "subset", None) is not None:
        recipe_key["subset"] = settings.subset  # so does training on every row: the keys it had before subsets
    key = cache_key(base=base, settings=recipe_key, dtype=dtype, seed=seed, data=data_hash.hexdigest())
    folder = cache_dir / f"finetuned-{Path(base).name or 'model'}-{kind}-{key}"
    log_path = folder / "finetune_log.json"
    if log_path.is_file():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
        model.eval()
        return model, {**json.loads(log_path.read_text()), "cached": True, "path": str(folder)}
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    if lora is not None and lora.enabled:
        # only the adapters train; merged into the weights afterwards, so the target is a plain model
        model = apply_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules, "model.finetune.lora")
    steps_per_epoch = math.ceil(len(rows) / settings.batch_size)
    recipe = SimpleNamespace(
        epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, weight_decay=settings.weight_decay,
        warmup_steps=max(1, round(settings.warmup_epochs * steps_per_epoch)),
    )  # fmt: skip
    log = finetune(
        model, tokenizer, rows, fmt, recipe, max_length, seed, progress, desc=f"fine-tune {kind} model",
        eager_attention=False,
    )  # fmt: skip
    if lora is not None and lora.enabled:
        log["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        model = model.merge_and_unload()  # W + (alpha / r) B A: the adapters become part of the weights
        model.requires_grad_(True)  # peft froze the base; the target is a plain model, as if loaded from its folder
    model = model.to(dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    from dualoptim.io import write_json_atomic

    write_json_atomic(log_path, {**log, "base": base})  # written last: marks a complete cache entry
    return model, {**log, "base": base, "cached": False, "path": str(folder)}


def load_pretrained(
    name_or_path: str, dtype: str = "float32", pad_token: str | None = None
) -> tuple[Any, Any]:
    """A causal LM and its tokenizer from the hub or from a local ``save_pretrained`` folder.

    ``pad_token``: ``"eos"`` to pad with the eos token (Llama and Phi tokenizers have no pad
    token), another string to use it as the pad token, ``None`` to require one.
    """
    from transformers import AutoModelForCausalLM

    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ValueError(f"unknown model dtype {dtype!r}; use float32, bfloat16 or float16")
    tokenizer = load_tokenizer(name_or_path, pad_token)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype))
    except OSError as error:
        raise FileNotFoundError(f"cannot load model {name_or_path!r}: {error}") from error
    model.eval()
    return model, tokenizer


def load_tokenizer(name_or_path: str, pad_token: str | None = None) -> Any:
    """The tokenizer of a hub id or local folder, with ``pad_token`` set where it has none (see
    :func:`load_pretrained`); a missing folder, a quantised checkpoint or no pad token is an error."""
    from transformers import AutoTokenizer

    check_gguf(name_or_path)
    if looks_local(name_or_path) and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist")
    check_quantization(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as error:
        raise FileNotFoundError(f"cannot load model {name_or_path!r}: {error}") from error
    if pad_token is not None and tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if pad_token == "eos" else pad_token
    check_tokenizer(tokenizer, f"the tokenizer of {name_or_path}")
    return tokenizer


def apply_lora(
    model: torch.nn.Module, r: int, alpha: float, dropout: float, target_modules: list[str], where: str = "unlearn.lora"
) -> torch.nn.Module:
    """``model`` with LoRA adapters on ``target_modules`` (``peft``); only the adapters train.

    An adapted layer computes :math:`W x + \frac{\alpha}{r} B A x` with :math:`A \\in \\mathbb{R}^{r \times
    d_{in}}` (random) and :math:`B \\in \\mathbb{R}^{d_{out} \times r}` (zero), so the adapted model
    starts exactly equal to ``model``. A target name that matches no layer is an error naming it.
    """
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    missing = [target for target in target_modules if target not in present]
    if missing:
        raise ValueError(
            f"{where}.target_modules {missing} match no linear layer of the model; its linear layers: "
            f"{', '.join(sorted(present))}"
        )
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type="CAUSAL_LM")  # fmt: skip
    return get_peft_model(model, config)
