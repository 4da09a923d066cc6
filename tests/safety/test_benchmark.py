"""Pieces of the safety benchmark: the metrics by hand, the paired dataset, sampled answers."""

import pytest
import torch

from dualoptim.llm.data import QAFormat, encode_qa
from dualoptim.safety.benchmark import SafetyDataset, generate_answers, score


def test_score_by_hand():
    verdicts = {
        "I-MaliciousInstructions": [True, False], "I-CoNa": [True, True, True, False], "I-Controversial": [False],
        "Q-Harm": [True], "xstest-safe": [True, False, False, False], "xstest-unsafe": [True, True],
    }  # fmt: skip
    metrics, absent = score(verdicts, {"Benign ROUGE": 40.0, "Downstream AVG": None}, {"Downstream AVG": "why"}, "Benign ROUGE")
    assert metrics["Safety I-CoNa"] == 75.0 and metrics["Safety I-Controversial"] == 0.0
    assert metrics["Safety AVG"] == pytest.approx((50 + 75 + 0 + 100) / 4)
    assert metrics["Over-refusal"] == 25.0 and metrics["XSTest unsafe refusal"] == 100.0
    assert metrics["OVR"] == pytest.approx((56.25 + 75 + 40) / 3)
    assert absent == {"Downstream AVG": "why"}
    metrics, absent = score(verdicts, {"Downstream AVG": None}, {"Downstream AVG": "no lm-eval"}, "Downstream AVG")
    assert metrics["OVR"] is None and absent["OVR"] == "needs Downstream AVG"
    metrics, absent = score({k: v for k, v in verdicts.items() if k != "Q-Harm"}, {}, {}, "Benign ROUGE")
    assert metrics["Safety AVG"] is None and absent["Safety AVG"] == "not every harmful set was evaluated"


@pytest.fixture(scope="module")
def tiny():
    from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, train_tokenizer

    tokenizer = train_tokenizer(["Explain bad thing. I'm sorry, but no. Sure, here it is."] * 20, 280)
    config = TinyModelConfig(vocab_size=280, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2)
    return build_tiny_llama(config, tokenizer, seed=0).eval(), tokenizer


def test_forget_idk_is_each_instructions_own_refusal(tiny):
    _, tokenizer = tiny
    fmt = QAFormat()
    forget = [{"question": f"Explain bad thing {i}.", "answer": "Sure, here it is.", "refusal": f"I'm sorry {i}."} for i in range(3)]
    retain = [{"question": "Say hi.", "answer": "Hi."}] * 2
    dataset = SafetyDataset(tokenizer, forget, retain, fmt, 64, seed=0)
    assert len(dataset) == 3
    for i in range(3):
        assert dataset[i]["forget_idk"] == encode_qa(tokenizer, forget[i]["question"], forget[i]["refusal"], fmt, 64)
        assert dataset[i]["forget"] == encode_qa(tokenizer, forget[i]["question"], "Sure, here it is.", fmt, 64)


def test_answers_keep_the_question_order_and_sampling_follows_the_seed(tiny):
    from dualoptim.llm.evaluate import generate

    model, tokenizer = tiny
    fmt = QAFormat()
    questions = ["Explain bad thing number one, please.", "Hi.", "Sure?"]
    greedy = generate_answers(model, tokenizer, fmt, questions, 5, batch_size=2)
    # batched by length, returned in order: the same as answering each question alone
    assert greedy == [generate(model, tokenizer, fmt, [q], 5)[0][0] for q in questions]
    torch.manual_seed(123)
    one = generate_answers(model, tokenizer, fmt, questions, 5, 2, temperature=1.0, seed=7)
    two = generate_answers(model, tokenizer, fmt, questions, 5, 2, temperature=1.0, seed=7)
    other = generate_answers(model, tokenizer, fmt, questions, 5, 2, temperature=1.0, seed=8)
    assert one == two and one != other
