"""Our TOFU metrics against the numbers the published reference code gives on the same rows.

``data/tofu_reference.json`` holds a few dozen rows of TOFU's own evaluation logs (Llama-2-7b
fine-tuned on TOFU, and the one fine-tuned without forget10: real generations and per-item NLLs)
and what the reference functions returned on them when run unchanged, outside this repository:
locuslab/tofu ``evaluate_util.eval_rouge_recall``, ``aggregate_eval_stat.get_model_utility`` and
``get_forget_quality``, ``utils.get_model_utility``; sail-sg/closer-look-LLM-unlearning
``metrics.get_eval_results``, ``get_entailment_results``, ``compute_token_entropy``. The commits are
in the file. The embedder and NLI model cannot be loaded offline, so the fixture gives per-item
stand-ins for their outputs (``cosine``, ``nli_label``): what is checked is everything around them,
including which text is the NLI premise. ``docs/design.md`` §4.2 names the function each metric matches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualoptim.llm import evaluate as E
from dualoptim.llm import metrics as M

FIXTURE = json.loads((Path(__file__).parent / "data" / "tofu_reference.json").read_text())
NAMES = {"forget": "Forget", "retain": "Retain", "real_authors": "Real Authors", "world_facts": "Real World"}


class FrozenEmbedder:
    """Returns the fixture's per-item cosine, after checking it is asked about the right texts."""

    def __init__(self, rows):
        self.rows = rows

    def cosine(self, texts, references):
        assert list(texts) == [r["generation"] for r in self.rows]
        assert list(references) == [r.get("original_answer", r["answer"]) for r in self.rows]
        return [r["cosine"] for r in self.rows]


class FrozenNLI:
    """Returns the fixture's per-item label and records the (premise, hypothesis) pairs it was given."""

    def __init__(self, rows):
        self.rows, self.pairs = rows, []

    def labels(self, premises, hypotheses):
        self.pairs += [[p, h] for p, h in zip(premises, hypotheses)]
        return [r["nli_label"] for r in self.rows]


def raw_set(rows):
    """The per-item numbers :func:`dualoptim.llm.evaluate.evaluate_model` would produce for these rows."""
    return {
        "questions": [""] * len(rows),
        "answers": [r["answer"] for r in rows],
        "references": [r.get("original_answer", r["answer"]) for r in rows],
        "generations": [r["generation"] for r in rows],
        # the fixture's token entropy was computed with a whitespace tokenizer
        "generation_tokens": [r["generation"].split() for r in rows],
        "answer_nll": [r["answer_nll"] for r in rows],
        "paraphrased_nll": [r["paraphrased_nll"] for r in rows],
        "perturbed_nll": [r["perturbed_nll"] for r in rows],
    }


def scored(model):
    per_set, nli = {}, {}
    for name, rows in FIXTURE["models"][model].items():
        nli[name] = FrozenNLI(rows)
        per_set[name] = E.set_metrics(name, raw_set(rows), E.Judges(FrozenEmbedder(rows), None, nli[name], None))
    return per_set, nli


@pytest.mark.parametrize("model", ["target", "retain_model"])
def test_rouge_matches_tofu_rouge_score_with_stemming_row_by_row(model):
    for name, rows in FIXTURE["models"][model].items():
        expected = FIXTURE["expected"]["rouge"][model][name]
        ours = [M.rouge_recall(r["generation"], r["answer"]) for r in rows]
        assert [o["rougeL"] for o in ours] == pytest.approx(expected["rougeL"], abs=1e-12), name
        assert [o["rouge1"] for o in ours] == pytest.approx(expected["rouge1"], abs=1e-12), name


def test_the_fixture_can_tell_stemmed_rouge_from_plain_lcs():
    """Six rows score differently without stemming: the ROUGE test above would catch a regression."""
    import re

    def plain(prediction, reference):
        a, b = re.findall(r"[a-z0-9]+", prediction.lower()), re.findall(r"[a-z0-9]+", reference.lower())
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        return table[-1][-1] / len(b) if b else 0.0

    rows = [r for sets in FIXTURE["models"].values() for rs in sets.values() for r in rs]
    differ = [r for r in rows if abs(plain(r["generation"], r["answer"]) - M.rouge_l_recall(r["generation"], r["answer"])) > 1e-9]
    assert len(differ) == 6


def test_per_set_values_and_model_utility_match_tofu_aggregate_eval_stat():
    per_set, _ = scored("target")
    tofu = FIXTURE["expected"]["tofu_aggregate_eval_stat"]
    for name, label in NAMES.items():
        assert per_set[name]["ROUGE"] == pytest.approx(tofu[f"ROUGE {label}"], abs=1e-12)
        assert per_set[name]["Probability"] == pytest.approx(tofu[f"Prob. {label}"], rel=1e-9)
        assert per_set[name]["Truth Ratio"] == pytest.approx(tofu[f"Truth Ratio {label}"], rel=1e-9)
    assert M.model_utility(per_set).value == pytest.approx(tofu["Model Utility"], rel=1e-9)


def test_forget_quality_matches_tofu_get_forget_quality():
    target = E.truth_ratios(raw_set(FIXTURE["models"]["target"]["forget"]))
    retain = E.truth_ratios(raw_set(FIXTURE["models"]["retain_model"]["forget"]))
    expected = FIXTURE["expected"]["forget_quality"]["Forget Quality"]
    assert M.forget_quality(target, retain) == pytest.approx(expected, rel=1e-9)
    assert 0 < expected < 0.01  # the fine-tuned target is far from the model that never saw forget10


def test_retain_side_truth_ratio_is_the_geometric_one_not_utils_get_model_utility():
    """TOFU has two Truth Ratios: aggregate_eval_stat.py (its tables; also the closer look and
    open-unlearning) averages the perturbed NLLs (a geometric mean of probabilities), utils.py's
    get_model_utility (logged during unlearning) averages the probabilities. We match the first."""
    per_set, _ = scored("target")
    utils = FIXTURE["expected"]["tofu_utils"]
    assert abs(per_set["retain"]["Truth Ratio"] - utils["Retain Truth Ratio"]) > 0.01
    # utils.py's value by hand: mean max(0, 1 - mean_j P(perturbed_j) / P(paraphrased))
    import numpy as np

    rows = FIXTURE["models"]["target"]["retain"]
    ratio = [np.mean(np.exp(-np.array(r["perturbed_nll"]))) / np.exp(-r["paraphrased_nll"]) for r in rows]
    assert np.mean(np.maximum(0, 1 - np.array(ratio))) == pytest.approx(utils["Retain Truth Ratio"], rel=1e-9)


@pytest.mark.parametrize("model", ["target", "retain_model"])
def test_closer_look_values_and_aggregates_match_get_eval_results(model):
    per_set, nli = scored(model)
    closer = FIXTURE["expected"]["closer_look" if model == "target" else "closer_look_retain_model_forget"]
    for name in per_set:
        label, values = NAMES[name], per_set[name]
        truth_ratio = values["Truth Ratio (closer look)" if name == "forget" else "Truth Ratio"]
        assert truth_ratio == pytest.approx(closer[f"{label} Truth Ratio"], rel=1e-9)
        assert values["ROUGE"] == pytest.approx(closer[f"{label} ROUGE"], abs=1e-12)
        assert values["Probability"] == pytest.approx(closer[f"{label} Probability"], rel=1e-9)
        assert values["Token Entropy"] == pytest.approx(closer[f"{label} Token Entropy"], rel=1e-9)
        assert values["Cosine Similarity"] == pytest.approx(closer[f"{label} Cosine Similarity"], rel=1e-9)
        assert values["Entailment"] == pytest.approx(closer[f"{label} Entailment Score"], abs=1e-12)
        # the premise/hypothesis order of get_entailment_results
        assert nli[name].pairs == FIXTURE["expected"]["nli_pairs"][model][name]
    aggregates = M.closer_look(per_set, targeted=False)
    assert aggregates["UFE"].value == pytest.approx(closer["Forget Efficacy"], rel=1e-9)
    if model == "target":
        assert aggregates["MU"].value == pytest.approx(closer["Model Utility"], rel=1e-9)
        assert len(aggregates["MU"].used) == 18 and len(aggregates["UFE"].used) == 5
