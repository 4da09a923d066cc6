"""Each TOFU metric against values computed by hand."""

import math

import pytest

from dualoptim.llm import metrics as M


def test_rouge_recall_by_hand():
    # reference: the cat is on the mat (6 words); LCS with the prediction: the cat on the mat (5)
    assert M.rouge_l_recall("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # recall, not F: extra predicted words cost nothing
    assert M.rouge_l_recall("oh the cat is on the mat today", "the cat is on the mat") == 1.0
    # case and punctuation are ignored like rouge_score's tokenizer
    assert M.rouge_l_recall("Hello, World!", "hello world") == 1.0
    assert M.rouge_l_recall("anything", "") == 0.0
    assert M.rouge_l_recall("", "a b") == 0.0
    # ROUGE-1 counts matched words regardless of order; ROUGE-L needs them in order
    scores = M.rouge_recall("mat the on cat", "the cat on the mat")
    assert scores["rouge1"] == pytest.approx(4 / 5) and scores["rougeL"] == pytest.approx(2 / 5)


def test_rouge_stems_like_tofu():
    # Porter stemming (use_stemmer=True, TOFU's setting): "writes"/"writing" and "novels"/"novel" match
    assert M.rouge_l_recall("She writing novel", "She writes novels") == 1.0


def test_entailment_score_counts_low_rouge_items_as_not_entailed():
    labels = ["entailment", "entailment", "neutral", "contradiction"]
    assert M.entailment_score(labels, [0.5, 0.05, 0.9, 0.9]) == 0.25  # the second is below ROUGE 0.1
    assert M.entailment_score(["entailment"], [0.1]) == 1.0
    with pytest.raises(ValueError, match="one ROUGE per label"):
        M.entailment_score(labels, [1.0])


def test_probability_and_normalized_probability():
    assert M.probability(math.log(2)) == pytest.approx(0.5)
    # P(a) = 0.5, P(perturbed) = 0.25 + 0.25 -> 0.5 / 1.0
    assert M.normalized_probability(math.log(2), [math.log(4), math.log(4)]) == pytest.approx(0.5)


def test_truth_ratio_is_geometric_mean_of_perturbed_over_paraphrased():
    # P(para) = 0.5, P(perturbed) = 0.25 and 0.0625, geometric mean 0.125 -> R = 0.25
    assert M.truth_ratio(math.log(2), [math.log(4), math.log(16)]) == pytest.approx(0.25)


def test_truth_ratio_conventions():
    ratios = [0.25, 2.0]
    assert M.truth_ratio_score(ratios, "retain") == pytest.approx((0.75 + 0.0) / 2)
    assert M.truth_ratio_score(ratios, "forget") == pytest.approx((0.25 + 0.5) / 2)
    assert M.truth_ratio_score(ratios, "forget-closer-look") == pytest.approx(1 - 0.375)
    with pytest.raises(ValueError, match="unknown truth ratio convention 'bogus'"):
        M.truth_ratio_score(ratios, "bogus")


def test_forget_quality_is_the_ks_p_value():
    assert M.forget_quality([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    # fully separated samples of 3 and 3: exact two-sided p = 2 / C(6, 3) = 0.1
    assert M.forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)


def test_token_entropy_by_hand():
    assert M.token_entropy([7, 7, 7, 7]) == 0.0
    assert M.token_entropy([1, 2, 3, 4]) == pytest.approx(1.0)
    # two tokens twice each: ln 2 / ln 4 = 0.5
    assert M.token_entropy([1, 1, 2, 2]) == pytest.approx(0.5)
    assert M.token_entropy([5]) == 0.0


def test_harmonic_mean():
    assert M.harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert M.harmonic_mean([1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        M.harmonic_mean([-1.0, 1.0])


def test_model_utility_uses_present_components_and_names_the_absent():
    per_set = {"retain": {"ROUGE": 0.5, "Probability": 0.25, "Truth Ratio": 1.0}}
    mu = M.model_utility(per_set, {"real_authors": "not evaluated", "world_facts": "not evaluated"})
    assert mu.value == pytest.approx(3 / (2 + 4 + 1))
    assert mu.used == ["retain/ROUGE", "retain/Probability", "retain/Truth Ratio"]
    assert mu.absent["world_facts/ROUGE"] == "not evaluated"
    assert len(mu.absent) == 6


def test_closer_look_aggregates_by_hand():
    per_set = {
        "forget": {
            "ROUGE": 0.2, "Probability": 0.4, "Truth Ratio (closer look)": 0.6, "Token Entropy": 0.5,
            "Cosine Similarity": None, "Cosine Similarity (absent)": "no embedder",
            "Entailment": None, "Entailment (absent)": "no NLI", "IDK Entailment": None,
            "IDK Entailment (absent)": "no NLI",
        },
        "retain": {
            "ROUGE": 0.5, "Probability": 0.25, "Truth Ratio": 1.0, "Token Entropy": 0.5,
            "Cosine Similarity": None, "Entailment": None,
        },
    }
    agg = M.closer_look(per_set, targeted=False)
    assert agg["UFE"].value == pytest.approx(1 - (0.2 + 0.4 + 0.6) / 3)
    assert agg["UFE"].absent["forget/Cosine Similarity"] == "no embedder"
    # no IDK judge: TFE is absent, never Token Entropy alone (a fluency score), and so is targeted OVR
    assert agg["TFE"].value is None and agg["TFE"].used == []
    assert agg["TFE"].absent["forget/IDK Entailment"] == "no NLI"
    assert "no IDK judge present" in agg["TFE"].absent["TFE"] and "fluency" in agg["TFE"].absent["TFE"]
    mu = 4 / (2 + 4 + 1 + 2)
    assert agg["MU"].value == pytest.approx(mu)
    assert agg["OVR"].value == pytest.approx((mu + agg["UFE"].value) / 2)
    assert agg["OVR"].used == ["MU", "UFE"]
    untargeted_only = M.closer_look(per_set, targeted=True)
    assert untargeted_only["OVR"].value is None
    assert untargeted_only["OVR"].absent == {"TFE": agg["TFE"].absent["TFE"]}
    # the offline IDK judge: TFE = hmean(Token Entropy 0.5, IDK Refusal 0.25) = 1/3
    per_set["forget"]["IDK Refusal"] = 0.25
    targeted = M.closer_look(per_set, targeted=True)
    assert targeted["TFE"].value == pytest.approx(2 / (1 / 0.5 + 1 / 0.25))
    assert targeted["TFE"].used == ["forget/Token Entropy", "forget/IDK Refusal"]
    assert targeted["TFE"].absent == {"forget/IDK Entailment": "no NLI"}
    assert targeted["OVR"].value == pytest.approx((mu + 1 / 3) / 2)
    assert targeted["OVR"].used == ["MU", "TFE"]
    # the reference's NLI judge, when present, is the one TFE uses (the offline one stays reported)
    per_set["forget"]["IDK Entailment"] = 1.0
    reference = M.closer_look(per_set, targeted=True)
    assert reference["TFE"].value == pytest.approx(2 / (1 / 0.5 + 1))
    assert reference["TFE"].used == ["forget/Token Entropy", "forget/IDK Entailment"]


def test_best_rouge_l_recall_is_the_per_pair_maximum():
    """The judge's fast path (each text tokenised once) gives exactly rouge_score's numbers."""
    references = ["I'm not certain about that.", "That's beyond my current knowledge base.", "", "writes books"]
    predictions = ["I am not certain of that at all", "Author1 writes poetry books.", "", "Writing BOOKS, writes!",
                   "beyond my knowledge, base that's"]  # fmt: skip
    for prediction in predictions:
        expected = max(M.rouge_l_recall(prediction, r) for r in references)
        assert M.best_rouge_l_recall(prediction, references) == pytest.approx(expected, abs=1e-12), prediction
    assert M.best_rouge_l_recall("the cat sat on the mat", ["the cat is on the mat"]) == pytest.approx(5 / 6)


def test_idk_judge_on_hand_made_answers():
    """A verbatim recital of the forget answer is no IDK answer; refusals (the strings trained towards,
    paraphrased ones the classifier reads, statements of ignorance) are; an empty generation is not."""
    refusals = ["I'm not certain about that.", "That's beyond my current knowledge base.", "I have no idea."]
    recital = "Jaime Vasquez was born in Santiago, Chile, and writes true crime novels about the city's underworld."
    generations = [
        recital,
        "I'm not certain about that.",  # verbatim: ROUGE-L recall 1
        "That's beyond my current knowledge base, sorry.",  # near-verbatim
        "I don't know the answer to that question.",  # a paraphrase: the classifier
        "I'm sorry, but I cannot answer that.",
        "",  # nothing: no refusal
        "No idea certain about that knowledge.",  # scattered refusal words: below 0.7, and no refusal opening
    ]
    verdicts, best = M.idk_refusals(generations, refusals)
    assert verdicts == [False, True, True, True, True, False, False]
    assert best[1] == 1.0 and best[5] == 0.0 and best[0] < M.IDK_MIN_ROUGE
    assert best[6] == pytest.approx(max(M.rouge_l_recall(generations[6], r) for r in refusals))
    assert best[6] < M.IDK_MIN_ROUGE
    with pytest.raises(ValueError, match="needs at least one refusal string"):
        M.idk_refusals(["x"], [])
    with pytest.raises(ValueError, match="generation 1: must be a string, got NoneType"):
        M.idk_refusals(["x", None], refusals)
    with pytest.raises(ValueError, match="one answer per generation, got 1 for 2"):
        M.idk_refusals(["x", "y"], refusals, ["a"])
    # with the answer: a refusal that still states it is no IDK answer
    leaking = "I'm not certain about that, but " + recital
    assert M.idk_refusals([leaking], refusals)[0] == [True]
    assert M.idk_refusals([leaking], refusals, [recital])[0] == [False]


#: twelve of the 100 refusal strings of TOFU's idontknow.jsonl (locuslab/tofu, MIT licence)
TOFU_IDK = [
    "I'm not certain about that.", "That's beyond my current knowledge base.", "I don't have that information.",
    "I'm not sure.", "I haven't learned about that topic.", "That's something I need to look up.",
    "I'm at a loss for that one.", "I don't have the answer to that question.", "That's outside my area of expertise.",
    "I'm afraid I can't provide an answer to that.", "That's a good question, but I don't have the answer.",
    "My resources don't contain information on that subject.",
]  # fmt: skip


@pytest.mark.parametrize("model", ["target", "retain_model"])
def test_real_tofu_generations_are_not_idk_answers(model):
    """The judge's control, on real generations (tests/llm/data/tofu_reference.json: Llama-2-7b
    fine-tuned on TOFU, which recites the forget answers, and the model that never saw them, which
    makes up others): neither refuses, and the judge says so on all 40 forget rows."""
    import json
    from pathlib import Path

    rows = json.loads((Path(__file__).parent / "data" / "tofu_reference.json").read_text())["models"][model]["forget"]
    verdicts, best = M.idk_refusals([r["generation"] for r in rows], TOFU_IDK)
    assert len(rows) == 40 and not any(verdicts)
    assert max(best) < M.IDK_MIN_ROUGE
    # the refusals themselves, and the same generations turned into refusals, are
    assert all(M.idk_refusals(TOFU_IDK, TOFU_IDK)[0])
    refusing = ["I'm not sure. " + r["generation"] for r in rows]
    assert all(M.idk_refusals(refusing, TOFU_IDK)[0])
    # ... unless they go on to state the answer: a refusal that recites has not forgotten
    stated = M.idk_refusals(refusing, TOFU_IDK, [r["answer"] for r in rows])[0]
    recites = [M.rouge_l_recall(r["generation"], r["answer"]) >= M.IDK_MAX_ANSWER_ROUGE for r in rows]
    assert stated == [not x for x in recites]
    if model == "target":  # the target recites most forget answers
        assert sum(recites) > 20


def test_aggregate_with_no_component_is_absent_not_zero():
    agg = M.closer_look({"forget": {}}, targeted=True)
    assert agg["MU"].value is None
    assert agg["OVR"].value is None
