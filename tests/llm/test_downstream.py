"""Downstream utility through lm-eval: names checked first, absent with a reason offline, and a real
end-to-end run on a tiny Llama with a local multiple-choice task scored by hand."""

from __future__ import annotations

import json

import pytest
import torch

from dualoptim.llm.downstream import DOWNSTREAM_TASKS, check_tasks, downstream_utility


def test_reference_metric_keys():
    # the keys closer-look's real_world_eval.summary_results reads from lm-eval's results
    assert DOWNSTREAM_TASKS == {
        "arc_challenge": "acc_norm,none",
        "mmlu": "acc,none",
        "truthfulqa_mc1": "acc,none",
        "triviaqa": "exact_match,remove_whitespace",
        "gsm8k": "exact_match,flexible-extract",
    }


def test_unknown_task_names_it_and_the_known_ones(model, tokenizer):
    with pytest.raises(ValueError, match=r"unknown downstream task 'hellaswag'; known: arc_challenge, mmlu"):
        downstream_utility(model, tokenizer, ["arc_challenge", "hellaswag"])
    assert check_tasks(["gsm8k"]) == {"gsm8k": "exact_match,flexible-extract"}
    assert check_tasks(["mine"], {"mine": "acc,none"}) == {"mine": "acc,none"}


def test_without_lm_eval_every_task_is_absent_with_the_reason(model, tokenizer, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    result = downstream_utility(model, tokenizer, ["arc_challenge", "gsm8k"])
    for task in ("arc_challenge", "gsm8k"):
        assert result[task]["value"] is None
        assert "lm-eval is not installed" in result[task]["reason"]
        assert result[task]["metric"] == DOWNSTREAM_TASKS[task]


def _offline(monkeypatch):
    """No network here: make the hub fail at once instead of after its retries."""
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)


def test_data_that_cannot_be_loaded_is_absent_never_zero(model, tokenizer, monkeypatch, tmp_path):
    pytest.importorskip("lm_eval")
    _offline(monkeypatch)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))  # nothing cached either
    result = downstream_utility(model, tokenizer, ["arc_challenge"], limit=2)
    entry = result["arc_challenge"]
    assert entry["value"] is None
    assert entry["metric"] == "acc_norm,none"
    assert "could not be loaded" in entry["reason"] and "arc_challenge" in entry["reason"]


QUESTIONS = [
    ("Where was Author{i} born?", ["Paris", "Lima", "Oslo", "Cairo"], 0),
    ("What genre does Author{i} write?", ["poetry books", "horror", "romance novels", "history"], 2),
    ("Which city is Author{i} from?", ["Quito", "Hanoi", "Dakar", "Perth"], 1),
]


def _write_task(folder, name: str, metric: str) -> None:
    rows = [{"question": q.format(i=i), "choices": c, "label": (label + i) % 4}
            for i in range(6) for q, c, label in QUESTIONS]  # fmt: skip
    data = folder / "mc.json"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\n"
        "test_split: test\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        f"metric_list:\n  - metric: {metric}\n    aggregation: mean\n    higher_is_better: true\n",
        encoding="utf-8",
    )


@torch.no_grad()
def _hand_accuracies(model, tokenizer, rows) -> tuple[float, float]:
    """acc (argmax of the summed log-likelihood of " choice") and acc_norm (divided by its characters)."""
    hits = hits_norm = 0
    for row in rows:
        context = f"Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]:
            context_ids = tokenizer.encode(context)
            whole = tokenizer.encode(context + " " + choice)
            assert whole[: len(context_ids)] == context_ids
            ids = torch.tensor([whole])
            logprobs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            positions = range(len(context_ids) - 1, len(whole) - 1)
            total = sum(logprobs[p, whole[p + 1]].item() for p in positions)
            scores.append((total, total / len(" " + choice)))
        hits += max(range(4), key=lambda k: scores[k][0]) == row["label"]
        hits_norm += max(range(4), key=lambda k: scores[k][1]) == row["label"]
    return 100.0 * hits / len(rows), 100.0 * hits_norm / len(rows)


def test_end_to_end_on_a_local_task_equals_the_hand_accuracy(model, tokenizer, monkeypatch, tmp_path):
    pytest.importorskip("lm_eval")
    _offline(monkeypatch)
    _write_task(tmp_path, "tiny_mc", "acc")
    _write_task(tmp_path, "tiny_mc_norm", "acc_norm")
    model.train()
    result = downstream_utility(
        model, tokenizer, ["tiny_mc", "tiny_mc_norm"], batch_size=4, include_path=tmp_path,
        metrics={"tiny_mc": "acc,none", "tiny_mc_norm": "acc_norm,none"},
    )  # fmt: skip
    assert model.training  # the caller's mode is restored
    rows = [json.loads(line) for line in (tmp_path / "mc.json").read_text().splitlines()]
    acc, acc_norm = _hand_accuracies(model.eval(), tokenizer, rows)
    assert result["tiny_mc"] == {"value": pytest.approx(acc), "metric": "acc,none", "reason": None}
    assert result["tiny_mc_norm"] == {"value": pytest.approx(acc_norm), "metric": "acc_norm,none", "reason": None}
    # limit: the first N documents only
    first = downstream_utility(model, tokenizer, ["tiny_mc"], limit=3, include_path=tmp_path,
                               metrics={"tiny_mc": "acc,none"})["tiny_mc"]  # fmt: skip
    assert first["value"] == pytest.approx(_hand_accuracies(model, tokenizer, rows[:3])[0])
