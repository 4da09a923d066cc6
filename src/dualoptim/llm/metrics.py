r"""TOFU metrics (``docs/design.md`` §4.2): ROUGE-L recall, Probability, Truth Ratio, Forget Quality, Model
Utility, and the "closer look" aggregates (Token Entropy, Cosine Similarity, MU, UFE, TFE, OVR).

Everything here is a plain function of numbers and strings, so each is unit-tested against hand-
computed values; the model-side work (NLLs, generations, embeddings) is in
:mod:`dualoptim.llm.evaluate`. P(answer) is always :math:`\exp(-\text{mean token NLL})`.

A metric that needs a model we cannot load (an NLI model, a sentence embedder that is not
installed) is *absent*: ``None`` with a reason, never 0. Aggregates take the components that are
present and say which they used and which were absent. Targeted forgetting (TFE) needs an IDK
judge: the reference's NLI model (IDK Entailment) or, without one, the offline IDK Refusal judge
(:func:`idk_refusals`); with neither, TFE is absent, never Token Entropy alone.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dualoptim.llm.facts import lcs_length
from dualoptim.metrics.refusal import is_refusal

__all__ = [
    "Aggregate",
    "forget_quality",
    "harmonic_mean",
    "entailment_score",
    "IDK_MAX_ANSWER_ROUGE",
    "IDK_MIN_ROUGE",
    "idk_refusals",
    "normalized_probability",
    "probability",
    "best_rouge_l_recall",
    "rouge_l_recall",
    "rouge_recall",
    "token_entropy",
    "truth_ratio",
    "truth_ratio_score",
    "model_utility",
    "closer_look",
]

# --------------------------------------------------------------------------- per item


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    # TOFU's evaluate_util.eval_rouge_recall and the closer-look metrics.eval_rouge_recall
    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_recall(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1 and ROUGE-L recall of ``prediction`` against ``reference`` (``{"rouge1", "rougeL"}``).

    The maintained ``rouge_score`` package with Porter stemming, exactly as TOFU and the closer-look
    code call it (``scorer.score(reference, prediction)``): words are lower-cased ``[a-z0-9]+`` runs,
    so "writes" and "writing" match; recall = matches / words of the reference, 0 for an empty one.
    """
    scores = _rouge_scorer().score(reference, prediction)
    return {"rouge1": float(scores["rouge1"].recall), "rougeL": float(scores["rougeL"].recall)}


@functools.lru_cache(maxsize=1)
def _rouge_tokenizer():
    from rouge_score import tokenizers

    # the tokenizer RougeScorer(use_stemmer=True) builds: lower-cased [a-z0-9]+ runs, Porter-stemmed
    return tokenizers.DefaultTokenizer(use_stemmer=True)


def best_rouge_l_recall(prediction: str, references: Sequence[str]) -> float:
    """max over ``references`` of :func:`rouge_l_recall` (prediction, reference), tokenising each text
    once: the same numbers as calling it per pair (tested), at a fraction of the cost."""
    return _best_recall(prediction, [_rouge_tokenizer().tokenize(r) for r in references])


def _best_recall(prediction: str, reference_tokens: Sequence[Sequence[str]]) -> float:
    predicted = _rouge_tokenizer().tokenize(prediction)
    return max((lcs_length(ref, predicted) / len(ref) if ref else 0.0) for ref in reference_tokens)


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall (LCS over stemmed words / words of the reference): TOFU's ``ROUGE``."""
    return rouge_recall(prediction, reference)["rougeL"]


def probability(mean_nll: float) -> float:
    """P(answer) = exp(−mean token NLL), the length-normalised answer probability."""
    return math.exp(-mean_nll)


def normalized_probability(answer_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """P(a) / (P(a) + Σ_j P(perturbed_j)): the real-authors / world-facts Probability."""
    p_answer = probability(answer_nll)
    return p_answer / (p_answer + sum(probability(n) for n in perturbed_nlls))


def truth_ratio(paraphrased_nll: float, perturbed_nlls: Sequence[float]) -> float:
    r"""R = geometric-mean P(perturbed) / P(paraphrased) = exp(NLL_para − mean_j NLL_pert_j).

    R < 1: the model prefers the (paraphrased) true answer; R ≈ 1: it cannot tell them apart.
    """
    return math.exp(paraphrased_nll - float(np.mean(perturbed_nlls)))


def truth_ratio_score(ratios: Sequence[float], convention: str) -> float:
    """Aggregate truth ratios R of a set into the reported Truth Ratio.

    * ``"retain"`` (retain, real authors, world facts): mean max(0, 1 − R), higher = knows;
    * ``"forget"`` (TOFU's forget set): mean min(R, 1/R), higher = forgotten;
    * ``"forget-closer-look"``: 1 − mean min(R, 1/R), higher = still knows, like the other
      forget-side values the closer-look UFE averages.
    """
    r = np.asarray(ratios, dtype=float)
    if r.size == 0:
        raise ValueError("truth_ratio_score needs at least one ratio")
    if convention == "retain":
        return float(np.mean(np.maximum(0.0, 1.0 - r)))
    if convention == "forget":
        return float(np.mean(np.minimum(r, 1.0 / r)))
    if convention == "forget-closer-look":
        return float(1.0 - np.mean(np.minimum(r, 1.0 / r)))
    raise ValueError(
        f"unknown truth ratio convention {convention!r}; valid: retain, forget, forget-closer-look"
    )


def forget_quality(unlearned_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> float:
    """TOFU Forget Quality: p-value of the two-sample KS test between the forget-set truth ratios
    of the unlearned model and of the model trained without the forget set (higher = closer)."""
    from scipy.stats import ks_2samp

    if len(unlearned_ratios) == 0 or len(retain_model_ratios) == 0:
        raise ValueError("forget_quality needs truth ratios from both models")
    return float(ks_2samp(np.asarray(unlearned_ratios), np.asarray(retain_model_ratios)).pvalue)


def token_entropy(tokens: Sequence[object]) -> float:
    r"""Normalised token entropy of one generation: −Σ_i f_i log f_i / log |y|.

    f_i is the frequency of the i-th distinct token among the |y| generated tokens. 1 when every
    token differs, near 0 for degenerate repetition ("the the the ..."). Generations of fewer
    than 2 tokens get 0: there is no diversity to measure, and such outputs are degenerate.
    """
    n = len(tokens)
    if n < 2:
        return 0.0
    counts = np.array(list(Counter(tokens).values()), dtype=float)
    freq = counts / n
    return float(-(freq * np.log(freq)).sum() / math.log(n))


#: below this ROUGE-L recall the closer-look code counts an item as not entailed, whatever the NLI model says
ENTAILMENT_MIN_ROUGE = 0.1


def entailment_score(labels: Sequence[str], rouges: Sequence[float]) -> float:
    """Share of items the NLI model labels ``entailment``, an item with ROUGE-L recall below 0.1
    counting as not entailed (the closer-look ``get_entailment_results`` + ``get_entailment_score``)."""
    if len(labels) != len(rouges) or not labels:
        raise ValueError(f"entailment_score needs one ROUGE per label, got {len(labels)} labels, {len(rouges)} ROUGE")
    hits = [label == "entailment" and rouge >= ENTAILMENT_MIN_ROUGE for label, rouge in zip(labels, rouges)]
    return sum(hits) / len(hits)


#: a generation whose ROUGE-L recall against one of the refusal strings reaches this is an IDK answer
#: (the 3,600 forget10 answers reach at most 0.625 against ``idontknow.jsonl``: docs/design.md §4.2.1)
IDK_MIN_ROUGE = 0.7
#: ... unless its ROUGE-L recall against the item's own answer reaches this: it still states the answer
IDK_MAX_ANSWER_ROUGE = 0.5


def idk_refusals(
    generations: Sequence[str], refusals: Sequence[str], answers: Sequence[str] | None = None
) -> tuple[list[bool], list[float]]:
    r"""The offline IDK judge: is each generation an "I don't know"-style refusal? (docs/design.md §4.2)

    Item :math:`i` is an IDK answer when its generation :math:`g_i` is not empty,

    .. math:: \max_j \mathrm{R_L}(g_i, r_j) \ge 0.7 \;\text{ or }\; \mathrm{refusal}(g_i),
              \qquad\text{and}\qquad \mathrm{R_L}(g_i, a_i) < 0.5,

    with :math:`\mathrm{R_L}(g, x)` the ROUGE-L recall of :math:`g` against :math:`x`, :math:`r_j` the
    refusal strings the IDK losses train towards (every one, not one drawn per item),
    :math:`\mathrm{refusal}` the string classifier :func:`dualoptim.metrics.refusal.is_refusal` (it
    reads paraphrased refusals and statements of ignorance) and :math:`a_i` the item's answer
    (when ``answers`` is given: a refusal that goes on to state the answer has not forgotten it).
    Needs no model. Returns the verdicts and each item's best ROUGE-L recall against the refusals.
    An empty generation is no refusal: it is not what the targeted losses train towards.
    """
    if not refusals:
        raise ValueError("idk_refusals needs at least one refusal string")
    if answers is not None and len(answers) != len(generations):
        raise ValueError(f"idk_refusals needs one answer per generation, got {len(answers)} for {len(generations)}")
    tokenize = _rouge_tokenizer().tokenize
    refusal_tokens = [tokenize(r) for r in refusals]  # once, not once per generation
    verdicts: list[bool] = []
    best: list[float] = []
    for i, generation in enumerate(generations):
        if not isinstance(generation, str):
            raise ValueError(f"generation {i}: must be a string, got {type(generation).__name__}")
        score = _best_recall(generation, refusal_tokens) if generation.strip() else 0.0
        best.append(score)
        refuses = bool(generation.strip()) and (score >= IDK_MIN_ROUGE or is_refusal(generation))
        if refuses and answers is not None:
            refuses = rouge_l_recall(generation, answers[i]) < IDK_MAX_ANSWER_ROUGE
        verdicts.append(refuses)
    return verdicts, best


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 when any value is 0 (TOFU's convention through ``scipy.stats.hmean``)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("harmonic_mean of no values")
    if np.any(v < 0):
        raise ValueError(f"harmonic_mean needs non-negative values, got {v.tolist()}")
    if np.any(v == 0):
        return 0.0
    return float(v.size / np.sum(1.0 / v))


# --------------------------------------------------------------------------- aggregates


@dataclass
class Aggregate:
    """An aggregate metric with the components it used and those that were absent (with reasons)."""

    value: float | None
    used: list[str] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"value": self.value, "used": self.used, "absent": self.absent}


def _split(
    values: Mapping[str, float | None], reasons: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, str]]:
    present = {k: float(v) for k, v in values.items() if v is not None}
    absent = {k: reasons.get(k, "not computed") for k, v in values.items() if v is None}
    return present, absent


def _aggregate(kind: str, values: Mapping[str, float | None], reasons: Mapping[str, str]) -> Aggregate:
    present, absent = _split(values, reasons)
    if not present:
        return Aggregate(None, [], absent)
    numbers = list(present.values())
    value = harmonic_mean(numbers) if kind == "hmean" else 1.0 - float(np.mean(numbers))
    return Aggregate(value, list(present), absent)


SETS = ("retain", "real_authors", "world_facts")
TOFU_UTILITY = ("ROUGE", "Probability", "Truth Ratio")
CLOSER_LOOK_UTILITY = (
    "ROUGE",
    "Probability",
    "Truth Ratio",
    "Token Entropy",
    "Cosine Similarity",
    "Entailment",
)
CLOSER_LOOK_FORGET = ("ROUGE", "Probability", "Truth Ratio (closer look)", "Cosine Similarity", "Entailment")
#: the IDK judges of TFE, in order of preference: the reference's NLI judge, then the offline one
IDK_JUDGES = ("IDK Entailment", "IDK Refusal")


def _pick(
    per_set: Mapping[str, Mapping[str, float | None]],
    sets: Sequence[str],
    names: Sequence[str],
    set_reasons: Mapping[str, str],
) -> tuple[dict[str, float | None], dict[str, str]]:
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for s in sets:
        for name in names:
            key = f"{s}/{name}"
            if s not in per_set:
                values[key] = None
                reasons[key] = set_reasons.get(s, f"set {s!r} not evaluated")
                continue
            values[key] = per_set[s].get(name)
            if values[key] is None:
                reasons[key] = per_set[s].get(f"{name} (absent)") or f"{name} not computed"
    return values, reasons


def _targeted(per_set: Mapping[str, Mapping[str, float | None]], set_reasons: Mapping[str, str]) -> Aggregate:
    """TFE: hmean of forget Token Entropy and the first IDK judge of :data:`IDK_JUDGES` present."""
    values, reasons = _pick(per_set, ["forget"], ("Token Entropy", *IDK_JUDGES), set_reasons)
    judge = next((f"forget/{name}" for name in IDK_JUDGES if values[f"forget/{name}"] is not None), None)
    if judge is None:
        absent = {k: reasons[k] for k in values if values[k] is None}
        absent["TFE"] = "no IDK judge present (IDK Entailment, IDK Refusal); Token Entropy alone is a fluency score, not forgetting"
        return Aggregate(None, [], absent)
    kept = {k: v for k, v in values.items() if k == "forget/Token Entropy" or k == judge}
    aggregate = _aggregate("hmean", kept, reasons)
    aggregate.absent.update({k: reasons[k] for k in values if values[k] is None and k not in kept})
    return aggregate


def model_utility(
    per_set: Mapping[str, Mapping[str, float | None]],
    set_reasons: Mapping[str, str] | None = None,
    sets: Sequence[str] = SETS,
) -> Aggregate:
    """TOFU Model Utility: harmonic mean of {ROUGE, Probability, Truth Ratio} × {retain, real
    authors, world facts}, over the components present. ``per_set[s][name]`` holds the values;
    ``per_set[s][name + " (absent)"]`` the reason for a missing one. ``sets``: the utility sets
    (the real-person task has one, ``neighbor``)."""
    values, reasons = _pick(per_set, sets, TOFU_UTILITY, set_reasons or {})
    return _aggregate("hmean", values, reasons)


def closer_look(
    per_set: Mapping[str, Mapping[str, float | None]],
    targeted: bool,
    set_reasons: Mapping[str, str] | None = None,
    sets: Sequence[str] = SETS,
) -> dict[str, Aggregate]:
    """MU, UFE, TFE and OVR of the "closer look" evaluation (used in the DualOptim+ tables).

    * MU = harmonic mean of the 18 retain-side values (3 sets × 6 metrics; ``sets`` names them:
      the real-person task has the neighbour set alone, 6 values, as the reference's ``Model Utility``);
    * UFE = 1 − mean of the forget-side ROUGE, Probability, Truth Ratio (closer look), Cosine
      Similarity, Entailment (untargeted forgetting: the knowledge is gone);
    * TFE = harmonic mean of forget Token Entropy and an IDK judge (targeted forgetting: fluent
      refusals): IDK Entailment (the reference's NLI judge) when present, else the offline IDK
      Refusal (:func:`idk_refusals`); absent when neither is, never Token Entropy alone (a fluency
      score, as high for a model that still recites every forget answer);
    * OVR = (MU + FE) / 2 with FE = TFE for targeted forget losses (IDK, DPO), else UFE.
    """
    set_reasons = set_reasons or {}
    mu = _aggregate("hmean", *_pick(per_set, sets, CLOSER_LOOK_UTILITY, set_reasons))
    ufe = _aggregate("1-mean", *_pick(per_set, ["forget"], CLOSER_LOOK_FORGET, set_reasons))
    tfe = _targeted(per_set, set_reasons)
    fe_name, fe = ("TFE", tfe) if targeted else ("UFE", ufe)
    if mu.value is None or fe.value is None:
        # the reason travels up: "TFE: no IDK judge present ..." rather than a bare "absent"
        reason = {"MU": "absent"} if mu.value is None else {fe_name: fe.absent.get(fe_name, "absent")}
        ovr = Aggregate(None, [], reason)
    else:
        ovr = Aggregate((mu.value + fe.value) / 2, ["MU", fe_name], {})
    return {"MU": mu, "UFE": ufe, "TFE": tfe, "OVR": ovr}
