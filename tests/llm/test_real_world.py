"""The real-person task (``data.dataset: real_world``): loader, bad input, presets, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualoptim.cli import main
from dualoptim.config import load_config
from dualoptim.llm.config import TofuConfig, validate
from dualoptim.llm.data import REAL_WORLD_FILES, RealWorldSource, all_rows, load_split, make_source, task_ids
from dualoptim.paths import default_data_root

FACTS = [("Where was {p} born?", "{p} was born in {c}.", "In {c}."),
         ("What does {p} do?", "{p} is a famous {j} known all over the world.", "{p} is a {j}.")]  # fmt: skip
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar"]
JOBS = ["painter", "drummer", "writer", "chemist", "dancer", "sculptor", "pilot"]


def _rows(people: list[int], task: bool) -> list[dict]:
    rows = []
    for number, person in enumerate(people, 1):
        name, city, job = f"Person{person} Family{person}", CITIES[person % 7], JOBS[(2 * person) % 7]
        for question, answer, golden in FACTS:
            row = {"name": name, "question": question.format(p=name),
                   "answer": answer.format(p=name, c=city, j=job), "golden_answer": golden.format(p=name, c=city, j=job)}  # fmt: skip
            rows.append({**row, "task_id": number} if task else row)
    return rows


def _perturbed(rows: list[dict]) -> list[dict]:
    return [{**r, "paraphrased_answer": "Indeed, " + r["golden_answer"], "paraphrased_question": r["question"],
             "perturbed_answer": [r["golden_answer"].replace(".", f" or town {k}.") for k in range(3)]}
            for r in rows]  # fmt: skip


def write_real_world(folder: Path, idk: bool = True) -> Path:
    """3 people to forget (task ids 1-3), 2 retain neighbours, 2 other evaluation neighbours; 2 rows each."""
    folder.mkdir(parents=True, exist_ok=True)
    forget, neighbor, measured = _rows([0, 1, 2], True), _rows([3, 4], False), _rows([5, 6], False)
    files = {"forget.json": forget, "neighbor.json": neighbor, "forget_perturbed.json": _perturbed(forget),
             "neighbor_perturbed.json": _perturbed(measured)}  # fmt: skip
    for name, rows in files.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if idk:
        (folder / "idontknow.jsonl").write_text("I don't know.\nNo idea.\n", encoding="utf-8")
    return folder


@pytest.fixture()
def real_dir(tmp_path) -> Path:
    return write_real_world(tmp_path / "real_world")


# --------------------------------------------------------------------------- loader


def test_loader_fields_and_sizes(real_dir):
    source = make_source("real_world", real_dir)
    assert task_ids(source, "forget10") == ["all", "1", "2", "3"]
    split = load_split(source, "ignored", "all")
    assert (split.split, split.task) == ("real_world", "all")
    assert len(split.forget) == 6 and len(split.retain) == 4 and split.idk == ["I don't know.", "No idea."]
    assert set(split.forget[0]) == {"question", "answer"}
    assert split.forget[0]["answer"] == "Person0 Family0 was born in Paris."  # unlearning trains on `answer`
    # the retain-only reference learns both neighbour files (never the forget people)
    assert len(split.reference_rows) == 8
    assert not {r["question"] for r in split.forget} & {r["question"] for r in split.reference_rows}
    forget_eval, neighbor_eval = split.eval_sets["forget"], split.eval_sets["neighbor"]
    assert set(split.eval_sets) == {"forget", "neighbor"}
    # evaluation compares with golden_answer, interleaved person by person
    assert [r["answer"] for r in forget_eval[:3]] == ["In Paris.", "In Lima.", "In Oslo."]
    assert set(forget_eval[0]) == {"question", "answer", "paraphrased_answer", "perturbed_answer"}
    # the evaluation neighbours are other people than the retain neighbours
    assert len(neighbor_eval) == 4 and "Person5" in neighbor_eval[0]["question"]
    assert not {r["question"] for r in neighbor_eval} & {r["question"] for r in split.retain}
    # the long answers on request
    assert load_split(source, "", "all", "answer").eval_sets["forget"][0]["answer"].startswith("Person0 Family0 was")
    # a one-person task: its rows forgotten, the other people kept by the reference model
    one = load_split(source, "", 2)
    assert {r["question"].split()[2] for r in one.forget} == {"Person1"}
    assert len(one.retain) == 4 and len(one.reference_rows) == 12 and len(one.eval_sets["forget"]) == 2
    # a from-scratch target learns every row: forget, retain neighbours, evaluation neighbours
    assert len(all_rows(source)) == 14


def test_unknown_task_lists_the_valid_ones(real_dir):
    with pytest.raises(ValueError, match=r"unknown real_world task '7'; valid: all, 1, 2, 3"):
        load_split(RealWorldSource(real_dir), "", "7")


@pytest.mark.parametrize("name", list(REAL_WORLD_FILES))
def test_missing_file_names_the_file_and_the_folder(real_dir, name):
    (real_dir / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"real_world data folder '{real_dir}' is missing the file\(s\) {name}"):
        RealWorldSource(real_dir)


def test_missing_folder_and_refusals_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"real_world data folder '.*void' does not exist"):
        RealWorldSource(tmp_path / "void")
    folder = write_real_world(tmp_path / "data" / "real_world", idk=False)
    with pytest.raises(FileNotFoundError, match=r"no refusal strings .*real_world/idontknow.jsonl.*tofu/idontknow.jsonl"):
        RealWorldSource(folder)
    # TOFU's file beside it is found (the layout of the data root)
    (tmp_path / "data" / "tofu").mkdir()
    (tmp_path / "data" / "tofu" / "idontknow.jsonl").write_text("Not sure.\n", encoding="utf-8")
    assert RealWorldSource(folder).rows("idontknow.jsonl") == [{"answer": "Not sure."}]


def test_row_without_a_key_names_the_file_and_line(real_dir):
    path = real_dir / "neighbor_perturbed.json"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    del row["perturbed_answer"]
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:3: the row has no 'perturbed_answer' \(each row of neighbor_perturbed"):
        load_split(RealWorldSource(real_dir), "", "all")
    (real_dir / "forget.json").write_text('{"name": "x"\n')
    with pytest.raises(ValueError, match=r"forget.json:1: not a JSON object"):
        RealWorldSource(real_dir).rows("forget.json")


def test_hub_is_refused_for_real_world(real_dir):
    with pytest.raises(ValueError, match="local folder only"):
        make_source("real_world", real_dir, hub=True)
    with pytest.raises(ValueError, match=r"unknown data.dataset 'people'; valid: tofu, real_world"):
        make_source("people")


SHARED = default_data_root() / "real_world"


@pytest.mark.skipif(not (SHARED / "forget.json").is_file(), reason="the shared real_world data is absent")
def test_the_shared_data_has_the_published_shape():
    source = RealWorldSource(SHARED)
    assert task_ids(source, "")[:3] == ["all", "1", "2"] and len(task_ids(source, "")) == 21
    split = load_split(source, "", "all")
    assert len(split.forget) == len(split.retain) == 400
    assert {k: len(v) for k, v in split.eval_sets.items()} == {"forget": 400, "neighbor": 400}
    assert len(split.reference_rows) == 800 and len(split.idk) > 50
    assert all(len(r["perturbed_answer"]) == 5 for r in split.eval_sets["forget"])


# --------------------------------------------------------------------------- presets


def test_gpu_preset_has_the_reference_settings():
    config = load_config(TofuConfig, "tofu", ["real-world-llama3-8b"], [])
    validate(config)
    u = config.unlearn
    assert config.model.name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct" and config.model.dtype == "bfloat16"
    assert config.data.dataset == "real_world" and config.data.format.chat_template is True
    assert (u.lr, u.batch_size, u.gradient_accumulation_steps, u.forget_coeff) == (5e-6, 4, 4, 0.5)
    # joint: 5 epochs of the 400 forget rows at 4 x 4 rows a step, warm-up one epoch; the alternating
    # strategies: 5 epochs of int(1.2 x 25) = 30 steps (real_world_unlearn.py), warm-up one epoch
    assert (u.joint.steps, u.joint.warmup_steps) == (5 * 400 // (4 * 4), 400 // (4 * 4))
    assert (u.steps, u.warmup_steps) == (5 * 30, 30)
    assert (u.weight_decay, tuple(u.betas), u.regularization_coeff) == (0.01, (0.9, 0.95), 1.0)
    assert config.losses == ["ME+GD", "IDK+GD"]
    assert config.strategies == ["joint", "alternate", "alternate-2lr", "dual", "dual+", "dual-8bit", "dual+-8bit"]
    assert config.tasks == ["all"] and config.data.eval_sets == ["forget", "neighbor"]
    assert config.data.eval_answer_key == "golden_answer"


def test_cpu_preset_is_the_tiny_stage_on_real_world():
    config = load_config(TofuConfig, "tofu", ["real-world-tiny"], [])
    validate(config)
    assert config.model.kind == "tiny" and config.data.dataset == "real_world"
    assert config.unlearn.forget_coeff == 0.5 and config.threads == 1
    assert config.strategies == ["joint", "alternate", "alternate-2lr", "dual", "dual+"]
    assert config.losses == ["ME+GD", "IDK+GD"]


def test_tofu_evaluation_sets_are_refused_on_real_world():
    config = load_config(TofuConfig, "tofu", ["real-world-tiny"], ["data.eval_sets=[forget, retain]"])
    with pytest.raises(ValueError, match=r"unknown evaluation set 'retain' of data.dataset real_world; valid: forget, neighbor"):
        validate(config)


# --------------------------------------------------------------------------- CLI end to end

TINY = [
    "--set", "model.tiny.vocab_size=300", "--set", "model.tiny.hidden_size=32",
    "--set", "model.tiny.intermediate_size=64", "--set", "model.tiny.num_heads=2", "--set", "model.tiny.epochs=2",
    "--set", "model.tiny.batch_size=4", "--set", "model.tiny.warmup_steps=2", "--set", "data.max_length=48",
    "--set", "data.eval_size=4", "--set", "data.max_new_tokens=6", "--set", "unlearn.steps=3",
    "--set", "unlearn.batch_size=2", "--set", "unlearn.eval_every=3", "--set", "unlearn.trajectory_size=2",
    "--set", "unlearn.warmup_steps=0", "--set", "unlearn.joint.steps=null", "--set", "unlearn.joint.warmup_steps=null",
    "--no-progress",
]  # fmt: skip


@pytest.mark.filterwarnings("ignore::dualoptim.llm.benchmark.KnowledgeWarning")  # 2 epochs teach nothing
def test_cli_end_to_end_on_tiny_fake_data(real_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["tofu", "--preset", "real-world-tiny", "--data", str(real_dir), "--losses", "ME+GD", "IDK+GD",
            "--strategies", "dual", "--seeds", "0", "--out", str(out), *TINY]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "real_world" and results["split"] == "real_world" and results["tasks"] == ["all"]
    rows = {(r["loss"], r["strategy"]): r for r in results["rows"]}
    assert set(rows) == {("target", "-"), ("retain model", "-"), ("ME+GD", "dual"), ("IDK+GD", "dual")}
    row = rows[("ME+GD", "dual")]
    for name in ("UFE", "TFE", "MU", "OVR", "Forget Quality", "Model Utility"):
        assert row["metrics"][name] is not None, name
    # utility is measured on the neighbour set alone; the TOFU sets are not part of this task
    assert row["aggregates"]["Model Utility"]["used"] == ["neighbor/ROUGE", "neighbor/Probability", "neighbor/Truth Ratio"]
    assert all(c.startswith("neighbor/") for c in row["aggregates"]["MU"]["used"])
    assert not any(k.startswith(("retain/", "real_authors/")) for k in row["metrics"])
    assert row["aggregates"]["OVR"]["used"] == ["MU", "UFE"]
    assert rows[("IDK+GD", "dual")]["aggregates"]["OVR"]["used"] == ["MU", "TFE"]
    # the curve follows the neighbour set's Probability
    assert set(row["runs"][0]["history"][0]) >= {"step", "forget/Probability", "neighbor/Probability"}
    assert results["models"]["target"]["rows"] == 14 and results["models"]["retain task all"]["rows"] == 8
    assert "real_world" in " ".join(results["notes"])
    table = (out / "table.md").read_text()
    assert table.startswith("# Real people (closer look), tasks all")
    assert "Per-set values, neighbour set (percent):" in table and "| ME+GD | dual" in table
    # the do-nothing rows: the target, scored untargeted and (for the IDK row) targeted
    assert "| do nothing (target) | - |" in table and "| do nothing (target), targeted scoring | - |" in table
    assert results["do_nothing"]["untargeted"]["metrics"]["OVR"] == rows[("target", "-")]["metrics"]["OVR"]
    assert (out / "tofu_curves.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "9"], "unknown real_world task '9'; valid: all, 1, 2, 3"),
        (["--hub"], "real_world is read from a local folder only"),
        (["--set", "data.eval_answer_key=short"], "unknown data.eval_answer_key 'short'"),
    ],
)
def test_bad_input_is_one_line(extra, message, real_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    argv = ["tofu", "--preset", "real-world-tiny", "--data", str(real_dir), "--out", str(tmp_path / "o"), *TINY, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_data_file_through_the_cli(real_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    (real_dir / "neighbor.json").unlink()
    argv = ["tofu", "--preset", "real-world-tiny", "--data", str(real_dir), "--out", str(tmp_path / "o"), *TINY]
    assert main(argv) == 2
    assert f"real_world data folder '{real_dir}' is missing the file(s) neighbor.json" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::dualoptim.llm.benchmark.KnowledgeWarning")
def test_downstream_utility_is_scored_on_the_target_and_every_unlearned_model(real_dir, tmp_path, monkeypatch):
    """data.downstream calls lm-eval (faked here) on every model; a task whose data is missing is absent
    with its reason, asked for once, and makes the average absent instead of averaging what is left."""
    from dualoptim.llm import downstream

    calls = []

    def fake(model, tokenizer, tasks, *, limit=None, batch_size=8, device="cpu"):
        calls.append((list(tasks), limit))
        out = {"arc_challenge": {"value": 40.0, "metric": "acc_norm,none", "reason": None},
               "gsm8k": {"value": None, "metric": "exact_match,flexible-extract",
                         "reason": "the data of 'gsm8k' could not be loaded: offline"}}  # fmt: skip
        return {t: out[t] for t in tasks}

    monkeypatch.setattr(downstream, "downstream_utility", fake)
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["tofu", "--preset", "real-world-tiny", "--data", str(real_dir), "--losses", "ME+GD", "--strategies",
            "dual", "dual+", "--seeds", "0", "--out", str(out), "--set", "data.downstream=[arc_challenge, gsm8k]",
            "--set", "data.downstream_limit=5", *TINY]  # fmt: skip
    assert main(argv) == 0
    # the target first, then each unlearned model; gsm8k is not asked for again once it is known absent
    assert calls == [(["arc_challenge", "gsm8k"], 5), (["arc_challenge"], 5), (["arc_challenge"], 5)]
    results = json.loads((out / "results.json").read_text())
    for row in results["rows"][:1] + results["rows"][2:]:
        assert row["metrics"]["downstream/arc_challenge"]["mean"] == 40.0
        assert row["metrics"]["downstream/gsm8k"] is None and "could not be loaded" in row["absent"]["downstream/gsm8k"]
        assert row["metrics"]["Downstream AVG"] is None and "gsm8k" in row["absent"]["Downstream AVG"]
    table = (out / "table.md").read_text()
    assert "Downstream utility (lm-eval, percent):" in table and "| ME+GD | dual+ | 40.00 | absent | absent |" in table


def test_an_unknown_downstream_task_is_one_line(real_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    argv = ["tofu", "--preset", "real-world-tiny", "--data", str(real_dir), "--out", str(tmp_path / "o"),
            "--set", "data.downstream=[arc_easy]", *TINY]  # fmt: skip
    assert main(argv) == 2
    assert "unknown downstream task 'arc_easy'; known: arc_challenge, mmlu, truthfulqa_mc1" in capsys.readouterr().err
