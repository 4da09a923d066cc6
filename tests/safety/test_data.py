"""The safety loader: the real layouts, and one clear error per kind of bad input."""

import json

import pytest

from dualoptim.safety.data import HARMFUL_SETS, REQUIRED_FILES, compliant_answer, load_safety
from tests.safety._fixture import BENIGN, HARMFUL, REFUSAL, write_safety


@pytest.fixture()
def folder(tmp_path):
    return write_safety(tmp_path / "safety")


def test_loads_every_file_with_ids(folder):
    data = load_safety(folder)
    assert list(data.harmful) == list(HARMFUL_SETS)
    assert [p.text for p in data.harmful["I-CoNa"]] == HARMFUL[1:4]
    assert data.harmful["Q-Harm"][2].id == "Q-Harm/2"
    assert [p.answer for p in data.refusals] == [REFUSAL] * len(HARMFUL)
    assert [p.label for p in data.xstest] == ["safe", "safe", "unsafe", "unsafe"]
    assert [p.id for p in data.xstest_of("unsafe")] == ["xstest/3", "xstest/4"]
    assert data.alpaca[0].id == "alpaca/seed_task_0" and data.alpaca[0].answer == BENIGN[0][1]
    assert len(data.benign) == 3


def test_an_input_follows_its_instruction(folder):
    (folder / "Q-Harm.json").write_text(json.dumps({"instructions": ["Say it:"], "inputs": ["hello"]}))
    assert load_safety(folder).harmful["Q-Harm"][0].text == "Say it: hello"


def test_real_folder_has_the_documented_sizes():
    from dualoptim.paths import default_data_root

    root = default_data_root() / "safety"
    if not root.is_dir():
        pytest.skip("no shared safety data here")
    data = load_safety(root)
    assert {n: len(p) for n, p in data.harmful.items()} == {
        "I-MaliciousInstructions": 100, "I-CoNa": 178, "I-Controversial": 40, "Q-Harm": 100}
    assert (len(data.refusals), len(data.xstest), len(data.xstest_of("safe")), len(data.alpaca)) == (2483, 450, 250, 175)


def test_missing_files_are_named_with_the_folder(folder):
    (folder / "Q-Harm.json").unlink()
    (folder / "xstest_prompts.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"safety.*is missing Q-Harm.json, xstest_prompts.csv"):
        load_safety(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_safety(folder / "nowhere")
    assert len(REQUIRED_FILES) == 8


def test_a_set_without_instructions_names_file_and_line(folder):
    (folder / "I-CoNa.json").write_text(json.dumps({"prompts": ["x"]}))
    with pytest.raises(ValueError, match=r"I-CoNa.json line 1: expected a JSON object with the key 'instructions'"):
        load_safety(folder)


def test_a_bad_instruction_names_its_line(folder):
    (folder / "I-CoNa.json").write_text('{\n  "instructions": [\n    "fine",\n    "also fine",\n    7\n  ]\n}')
    with pytest.raises(ValueError, match=r"I-CoNa.json line 5: instruction 2 must be a non-empty string"):
        load_safety(folder)


def test_a_refusal_row_without_output_names_its_line(folder):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c"}]
    (folder / "safety_only_data_Instructions.json").write_text(json.dumps(rows, indent=4))
    # item 1 opens on line 6 of the indented list
    with pytest.raises(ValueError, match=r"Instructions.json line 6: item 1 needs non-empty 'instruction' and 'output'"):
        load_safety(folder)


def test_invalid_json_names_its_line(folder):
    (folder / "Q-Harm.json").write_text('{\n "instructions": [\n "a",,\n ]}')
    with pytest.raises(ValueError, match=r"Q-Harm.json line 3: not valid JSON"):
        load_safety(folder)


def test_xstest_bad_header_and_label(folder):
    path = folder / "xstest_prompts.csv"
    path.write_text("id,text,label\n1,hi,safe\n")
    with pytest.raises(ValueError, match=r"xstest_prompts.csv line 1: the header lacks the column\(s\) prompt"):
        load_safety(folder)
    path.write_text("id,prompt,label\n1,hi,safe\n2,there,maybe\n")
    with pytest.raises(ValueError, match=r"xstest_prompts.csv line 3: .*label 'maybe'"):
        load_safety(folder)


def test_alpaca_row_without_output_names_its_line(folder):
    path = folder / "alpaca_seed_tasks.jsonl"
    path.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + json.dumps({"instruction": "c"}) + "\n")
    with pytest.raises(ValueError, match=r"alpaca_seed_tasks.jsonl line 2: needs 'instruction' and an 'output'"):
        load_safety(folder)


def test_compliant_answers_never_echo_and_cycle():
    assert compliant_answer(0) == compliant_answer(3) != compliant_answer(1)
    assert all("{" not in compliant_answer(i) for i in range(3))
