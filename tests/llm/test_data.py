"""TOFU loading, splits, formatting and the answer-only labels."""

import shutil
import sys
import types

import pytest

from dualoptim.llm.data import (
    IGNORE_INDEX,
    AlternatingSampler,
    QAFormat,
    TofuSource,
    UnlearningCollator,
    UnlearningDataset,
    all_rows,
    encode_qa,
    encode_rows,
    load_split,
    task_ids,
)
from dualoptim.paths import default_data_root
from dualoptim.schedule import Schedule


def test_split_forget_task_and_retain_is_every_other_row(tofu_dir):
    source = TofuSource(tofu_dir)
    split = load_split(source, "forget10", "2")
    assert len(split.forget) == 4
    assert len(all_rows(source)) == 16
    assert len(split.retain) == 12
    forget_q = {r["question"] for r in split.forget}
    assert not forget_q & {r["question"] for r in split.retain}
    assert {r["question"] for r in split.eval_sets["forget"]} == forget_q
    assert split.idk[0] == "I don't know."
    assert task_ids(source, "forget10") == ["1", "2", "3"]


@pytest.mark.skipif(not (default_data_root() / "tofu").is_dir(), reason="the shared TOFU folder is not here")
def test_real_tofu_sizes_match_the_standard_splits():
    source = TofuSource()
    assert len(all_rows(source)) == 4000
    for name, n_forget in (("forget01", 40), ("forget05", 200), ("forget10", 400)):
        split = load_split(source, name, "1")
        assert (len(split.forget), len(split.retain)) == (n_forget, 4000 - n_forget)


def test_bad_split_task_and_folder_are_named(tofu_dir, tmp_path):
    source = TofuSource(tofu_dir)
    with pytest.raises(ValueError, match="unknown split 'forget99'; valid: forget01, forget05, forget10"):
        load_split(source, "forget99", "1")
    with pytest.raises(ValueError, match="unknown task '7' for split 'forget10'; valid: 1, 2, 3"):
        load_split(source, "forget10", "7")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TofuSource(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    shutil.copytree(tofu_dir, partial)
    (partial / "idontknow.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="missing the file 'idontknow.jsonl'"):
        TofuSource(partial)
    (partial / "idontknow.jsonl").write_text("No idea.\n")
    (partial / "forget05_perturbed.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing the file 'forget05_perturbed.json'"):
        load_split(TofuSource(partial), "forget05", "1")


def test_labels_mask_the_question_and_keep_the_answer(tokenizer):
    fmt = QAFormat()
    example = encode_qa(tokenizer, "Where was Ann born?", "Ann was born in Oslo.", fmt, 128)
    answer_ids = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(answer_ids, skip_special_tokens=True).strip() == "Ann was born in Oslo."
    assert answer_ids[-1] == tokenizer.eos_token_id
    prompt = [t for t, label in zip(example["input_ids"], example["labels"]) if label == IGNORE_INDEX]
    assert prompt[0] == tokenizer.bos_token_id
    assert tokenizer.decode(prompt, skip_special_tokens=True) == "Question: Where was Ann born?\nAnswer:"


def test_chat_template_format():
    fmt = QAFormat(chat_template=True)
    from dualoptim.llm.models import train_tokenizer

    tok = train_tokenizer(["hello there user assistant"], 280)
    with pytest.raises(ValueError, match="no chat template"):
        fmt.prompt("hi", tok)
    tok.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
    assert fmt.prompt("hi", tok) == "<|user|>hi<|assistant|>"



def test_chat_template_is_automatic_for_tokenizers_that_have_one():
    from dualoptim.llm.models import train_tokenizer

    tok = train_tokenizer(["hello there user assistant"], 280)
    assert QAFormat().chat_template == "auto"
    assert QAFormat().prompt("hi", tok) == "Question: hi\nAnswer:"  # no template: the tags
    tok.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
    assert QAFormat().prompt("hi", tok) == "<|user|>hi<|assistant|>"  # an instruct tokenizer: its template
    assert QAFormat(chat_template=False).prompt("hi", tok) == "Question: hi\nAnswer:"  # the preset switch
    with pytest.raises(ValueError, match="chat_template must be true, false or auto, got 'yes'"):
        QAFormat(chat_template="yes").prompt("hi", tok)


def test_forget_set_that_tokenises_to_nothing_is_an_error(tokenizer, tofu_dir):
    rows = load_split(TofuSource(tofu_dir), "forget10", "1").forget
    with pytest.raises(ValueError, match="the forget set tokenises to nothing: 4 rows"):
        encode_rows(tokenizer, rows, QAFormat(), 4, "forget")


def test_tokenizer_without_pad_token_is_an_error(tokenizer, tofu_dir):
    from dualoptim.llm.models import train_tokenizer

    tok = train_tokenizer(["some text to learn from"], 270)
    tok.pad_token = None
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    with pytest.raises(ValueError, match="has no pad token; set model.pad_token"):
        UnlearningDataset(tok, split, QAFormat(), 64)


def test_paired_dataset_and_collator(tokenizer, tofu_dir):
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    dataset = UnlearningDataset(tokenizer, split, QAFormat(), 64, seed=0)
    assert len(dataset) == 12  # the larger (retain) set
    batch = UnlearningCollator(tokenizer.pad_token_id)([dataset[i] for i in range(3)])
    assert set(batch) == {"forget", "forget_idk", "retain", "retain_idk"}
    assert batch["forget"]["input_ids"].shape == batch["forget"]["labels"].shape
    idk_answer = [t for t, lab in zip(batch["forget_idk"]["input_ids"][0].tolist(), batch["forget_idk"]["labels"][0].tolist())
                  if lab != IGNORE_INDEX]
    assert tokenizer.decode(idk_answer, skip_special_tokens=True).strip() in split.idk
    # padding is masked out of attention and labels
    pad = batch["retain"]["attention_mask"] == 0
    assert (batch["retain"]["labels"][pad] == IGNORE_INDEX).all()


def test_hub_path_imports_datasets_lazily_and_maps_configs(monkeypatch):
    calls = []

    def load_dataset(repo, config, split):
        calls.append((repo, config, split))
        return [{"task_id": "1", "question": "q", "answer": "a"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    rows = TofuSource(hub=True).rows("forget10.json")
    assert rows == [{"task_id": "1", "question": "q", "answer": "a"}]
    assert calls == [("locuslab/TOFU", "forget10", "train")]


def _draws(sampler):
    """Per optimizer step: its objective and the forget and retain rows it consumed."""
    keys = list(sampler)
    assert len(keys) == len(sampler) == sampler.steps * sampler.rows_per_step
    steps = []
    for step in range(sampler.steps):
        chunk = keys[step * sampler.rows_per_step : (step + 1) * sampler.rows_per_step]
        steps.append((sampler.objective(step), [f for f, _ in chunk], [r for _, r in chunk]))
    return steps


def test_each_pass_of_the_sampler_visits_every_forget_row_once():
    # 400 forget rows, 40 a step, 1:5 over 300 steps: 50 forget steps, five passes (the reference's tofu protocol)
    sampler = AlternatingSampler(400, 3600, schedule=Schedule(1, 1, 5), steps=300, rows_per_step=40, seed=3)
    steps = _draws(sampler)
    forget = [row for objective, rows, _ in steps if objective == "forget" for row in rows]
    assert len(forget) == 2000
    for n in range(5):
        assert sorted(forget[n * 400 : (n + 1) * 400]) == list(range(400)), f"pass {n}"
    assert forget[:400] != forget[400:800]  # each pass a fresh order
    # retain steps cycle over the retain set the same way: 250 x 40 = 10,000 draws, 2 whole passes and a part
    retain = [row for objective, _, rows in steps if objective == "retain" for row in rows]
    assert len(retain) == 10000
    for n in range(2):
        assert sorted(retain[n * 3600 : (n + 1) * 3600]) == list(range(3600))
    assert len(set(retain[7200:])) == 10000 - 7200  # the third pass so far: no row twice
    # the same seed, the same keys (every process, and a resumed run); another seed, another order
    assert list(sampler) == list(AlternatingSampler(400, 3600, schedule=Schedule(1, 1, 5), steps=300,
                                                    rows_per_step=40, seed=3))  # fmt: skip
    assert list(sampler)[:40] != list(AlternatingSampler(400, 3600, schedule=Schedule(1, 1, 5), steps=300,
                                                         rows_per_step=40, seed=4))[:40]  # fmt: skip


def test_a_pass_that_does_not_fill_whole_steps_still_covers_each_row_once():
    # 10 forget rows, 4 a step: a pass ends inside a step and the next begins there
    sampler = AlternatingSampler(10, 7, schedule=Schedule(1, 1, 1), steps=10, rows_per_step=4)
    forget = [row for objective, rows, _ in _draws(sampler) if objective == "forget" for row in rows]
    assert len(forget) == 20
    assert sorted(forget[:10]) == sorted(forget[10:]) == list(range(10))


def test_the_side_a_step_does_not_use_is_not_consumed_and_joint_consumes_both():
    sampler = AlternatingSampler(6, 6, schedule=Schedule(1, 1, 2), steps=3, rows_per_step=3)
    (o1, f1, r1), (o2, f2, r2), (o3, f3, r3) = _draws(sampler)
    assert (o1, o2, o3) == ("forget", "retain", "retain")
    assert len(set(f1)) == 3 and len(set(r2 + r3)) == 6  # forget rows once, retain rows once
    # a forget step repeats the next retain row, unconsumed: the first retain step starts with it
    assert set(r1) == {r2[0]}
    # retain steps repeat the next forget row, which no forget step has taken yet
    assert set(f2) == set(f3) == {f2[0]} and f2[0] not in f1
    joint = AlternatingSampler(6, 6, schedule=Schedule(1, 1, 2), steps=2, rows_per_step=3, joint=True)
    (_, f1, r1), (_, f2, r2) = _draws(joint)
    assert sorted(f1 + f2) == sorted(r1 + r2) == list(range(6))


@pytest.mark.parametrize(("name", "value"), [("forget_size", 0), ("rows_per_step", True), ("steps", 1.5)])
def test_sampler_sizes_are_checked(name, value):
    options = dict(forget_size=4, retain_size=4, steps=2, rows_per_step=2)
    options[name] = value
    with pytest.raises(ValueError, match=f"AlternatingSampler {name} must be an integer >= 1, got {value!r}"):
        AlternatingSampler(options.pop("forget_size"), options.pop("retain_size"), schedule=Schedule(1, 1, 1), **options)


def test_dataset_takes_forget_and_retain_rows_by_key(tokenizer, tofu_dir):
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    dataset = UnlearningDataset(tokenizer, split, QAFormat(), 64, seed=0)
    item = dataset[(2, 5)]
    assert item["forget"] == dataset.forget[2] and item["forget_idk"] == dataset.forget_idk[2]
    assert item["retain"] == dataset.retain[5] and item["retain_idk"] == dataset.retain_idk[5]
