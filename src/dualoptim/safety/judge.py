"""Judges that decide whether an answer is a refusal: a string classifier (offline) or a model.

**The string classifier** is :func:`dualoptim.metrics.refusal.is_refusal` (the core module, shared
with the LLM task's offline IDK judge): XSTest-style rules on the wording of the answer's opening
(apologies, "I cannot", lectures such as "It is important to note ...", statements of ignorance;
sympathy and AI disclaimers count only when a declining phrase follows). An empty answer counts as
a refusal; a non-string answer (None, NaN, bytes) is a ``ValueError`` naming its row. It is
English-only and sees the form, not the content. Its agreement with people is measured on
held-aside XSTest completions of five instruct models (``benchmarks/safety_agreement.py xstest``,
``docs/safety.md`` "Judge agreement").

**A model judge** is any ``transformers`` text-classification model given by hub id or folder
(``judge.model``), with the labels that mean a refusal (``judge.refusal_labels``); for example
``ProtectAI/distilroberta-base-rejection-v1`` (labels ``NORMAL`` / ``REJECTION``). One that cannot be
loaded is an error unless ``judge.fallback`` is true; then the string classifier judges and every
result says so (:attr:`Judge.name`, :attr:`Judge.fallback_reason`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dualoptim.metrics.refusal import check_answer, is_refusal

__all__ = [
    "STRING_JUDGE",
    "Judge",
    "ModelJudge",
    "StringJudge",
    "cohen_kappa",
    "is_refusal",
    "load_judge",
]

#: the name results give the string classifier
STRING_JUDGE = "string-match (XSTest-style refusal rules, dualoptim.metrics.refusal, docs/safety.md)"


@dataclass
class Judge:
    """What every judge answers: is each answer a refusal? And what produced the verdict."""

    #: the judge that produced the numbers (a model id, or :data:`STRING_JUDGE`)
    name: str
    #: set when the configured model could not be loaded and the string classifier stood in
    fallback_reason: str | None = None

    def refusals(self, prompts: Sequence[str], answers: Sequence[str]) -> list[bool]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"judge": self.name, "fallback": self.fallback_reason}


class StringJudge(Judge):
    """The offline string classifier (:func:`is_refusal`)."""

    def __init__(self, fallback_reason: str | None = None) -> None:
        super().__init__(STRING_JUDGE, fallback_reason)

    def refusals(self, prompts: Sequence[str], answers: Sequence[str]) -> list[bool]:
        return [is_refusal(a, where=f"answer {i}") for i, a in enumerate(answers)]


class ModelJudge(Judge):
    """A ``transformers`` text classifier of answers: a predicted label in ``refusal_labels`` is a refusal."""

    def __init__(self, name_or_path: str, refusal_labels: Sequence[str], batch_size: int = 32, device: str = "cpu") -> None:
        super().__init__(name_or_path)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path).eval().to(device)
        labels = set(self.model.config.id2label.values())
        unknown = [label for label in refusal_labels if label not in labels]
        if unknown:
            raise ValueError(
                f"judge.refusal_labels {unknown} are not labels of {name_or_path!r}; its labels: {', '.join(sorted(labels))}"
            )
        self.refusal_ids = {i for i, label in self.model.config.id2label.items() if label in refusal_labels}
        self.batch_size = batch_size
        self.device = device

    def refusals(self, prompts: Sequence[str], answers: Sequence[str]) -> list[bool]:
        import torch

        verdicts: list[bool] = []
        with torch.no_grad():
            for begin in range(0, len(answers), self.batch_size):
                chunk = [check_answer(a, f"answer {begin + i}") for i, a in enumerate(answers[begin : begin + self.batch_size])]
                chunk = [a if a.strip() else "(no answer)" for a in chunk]
                batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=512, return_tensors="pt")
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
                verdicts += [int(i) in self.refusal_ids for i in logits.argmax(-1).tolist()]
        return verdicts


def load_judge(model: str | None, refusal_labels: Sequence[str], fallback: bool, batch_size: int = 32, device: str = "cpu") -> Judge:
    """The configured judge: the string classifier when ``model`` is None, else the model.

    A model that cannot be loaded is an error naming it, unless ``fallback``: then the string
    classifier, carrying the reason (results print it next to every number).
    """
    if model is None:
        return StringJudge()
    try:
        return ModelJudge(model, refusal_labels, batch_size, device)
    except (OSError, ImportError, ValueError) as error:
        reason = f"judge model {model!r} could not be loaded ({' '.join(str(error).split())[:300]})"
        if not fallback:
            raise ValueError(f"{reason}; set judge.fallback=true to judge with the string classifier instead") from None
        return StringJudge(fallback_reason=f"{reason}: the string classifier judged instead")


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    r"""Agreement of two binary raters: observed agreement :math:`p_o` and Cohen's

    .. math:: \kappa = \frac{p_o - p_e}{1 - p_e}, \qquad
              p_e = p_a p_b + (1 - p_a)(1 - p_b)

    with :math:`p_a, p_b` the share of ``True`` each rater gave (chance agreement :math:`p_e`).
    :math:`\kappa = 1` when :math:`p_e = 1` and the raters agree everywhere.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"kappa needs two equally long, non-empty label lists, got {len(a)} and {len(b)}")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    share_a, share_b = sum(a) / n, sum(b) / n
    chance = share_a * share_b + (1 - share_a) * (1 - share_b)
    kappa = 1.0 if chance == 1 else (observed - chance) / (1 - chance)
    return {"agreement": observed, "kappa": kappa, "n": n}
