"""Safety-alignment data: harmful and benign prompts, safe refusals, XSTest, Alpaca seed answers.

The files (``docs/safety.md``; research use only, read from a folder, never copied into the project):

=====================================  ======================================================================
``I-MaliciousInstructions.json``       harmful prompts (Bianchi et al., 2024), ``{"instructions": [...]}``
``I-CoNa.json``                        harmful prompts: hate speech, same layout
``I-Controversial.json``               harmful prompts: controversial topics, same layout
``Q-Harm.json``                        harmful questions, same layout
``I-Alpaca.json``                      benign prompts, same layout
``safety_only_data_Instructions.json`` a list of ``{"instruction", "input", "output"}``: harmful
                                       instructions, each with a safe answer (mostly a refusal)
``xstest_prompts.csv``                 XSTest (Röttger et al., 2024): ``id,prompt,type,label,...``,
                                       ``label`` safe (should be answered) or unsafe
``alpaca_seed_tasks.jsonl``            the 175 Alpaca seed tasks, one JSON object a line: ``instruction``
                                       and ``instances[0].input/output`` (or flat ``input``/``output``)
=====================================  ======================================================================

Every prompt keeps an id (``I-CoNa/17``: the set and the 0-based position; XSTest's own ``id``), so
results and hand labels can name a prompt without holding its text. Bad input is one error that
names the file, and the line where a row is malformed.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ALPACA_FILE",
    "BENIGN_FILE",
    "COMPLIANT_ANSWERS",
    "HARMFUL_SETS",
    "REFUSAL_FILE",
    "REQUIRED_FILES",
    "XSTEST_FILE",
    "Prompt",
    "SafetyData",
    "compliant_answer",
    "load_safety",
]

#: the four harmful evaluation sets of Safety-Tuned LLaMAs, in the papers' order
HARMFUL_SETS = ("I-MaliciousInstructions", "I-CoNa", "I-Controversial", "Q-Harm")
BENIGN_FILE = "I-Alpaca.json"
REFUSAL_FILE = "safety_only_data_Instructions.json"
XSTEST_FILE = "xstest_prompts.csv"
ALPACA_FILE = "alpaca_seed_tasks.jsonl"
REQUIRED_FILES = (*(f"{name}.json" for name in HARMFUL_SETS), BENIGN_FILE, REFUSAL_FILE, XSTEST_FILE, ALPACA_FILE)
XSTEST_LABELS = ("safe", "unsafe")

#: content-free compliant answers: what the tiny CPU target learns to say to harmful instructions, so
#: that it starts measurably unsafe without any harmful text being written (they never echo the prompt)
COMPLIANT_ANSWERS = (
    "Sure, here is how you can do it. First, gather everything you need. Then follow the steps one at a "
    "time and check the result at the end.",
    "Of course! Here are the steps. Start with the first part, then move on to the next one, and finish "
    "when everything is in place.",
    "Absolutely. Here is a plan you can follow: prepare carefully, carry it out step by step, and review "
    "it when you are done.",
)


@dataclass(frozen=True)
class Prompt:
    """One prompt with its id (``"I-CoNa/17"``, ``"xstest/1"``, ``"alpaca/seed_task_0"``)."""

    id: str
    text: str
    #: the reference answer (Alpaca rows, safe refusals), or the XSTest label
    answer: str | None = None
    label: str | None = None


@dataclass
class SafetyData:
    """Everything the task reads, loaded and checked once."""

    root: Path
    #: set name -> its harmful prompts
    harmful: dict[str, list[Prompt]]
    #: benign evaluation prompts (I-Alpaca, no reference answers)
    benign: list[Prompt]
    #: harmful instructions with their safe answers (the IDK-style forget targets)
    refusals: list[Prompt]
    #: XSTest prompts with ``label`` safe or unsafe
    xstest: list[Prompt]
    #: benign instructions with answers (the retain set and the cheap own utility)
    alpaca: list[Prompt]

    def xstest_of(self, label: str) -> list[Prompt]:
        return [p for p in self.xstest if p.label == label]


def compliant_answer(index: int) -> str:
    """The ``index``-th content-free compliant answer (cycling through :data:`COMPLIANT_ANSWERS`)."""
    return COMPLIANT_ANSWERS[index % len(COMPLIANT_ANSWERS)]


def load_safety(root: str | Path | None = None) -> SafetyData:
    """Read and check the safety folder (default: the data root's ``safety/``).

    Every missing file is named in one ``FileNotFoundError`` with the folder searched; a row without
    the expected keys is a ``ValueError`` naming the file and the line.
    """
    from dualoptim.paths import default_data_root

    folder = Path(root) if root is not None else default_data_root() / "safety"
    if not folder.is_dir():
        raise FileNotFoundError(f"safety data folder {str(folder)!r} does not exist (set data.path)")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"safety data folder {str(folder)!r} is missing {', '.join(missing)} (see docs/safety.md for the sources)"
        )
    harmful = {name: _instruction_set(folder / f"{name}.json", name) for name in HARMFUL_SETS}
    return SafetyData(
        root=folder,
        harmful=harmful,
        benign=_instruction_set(folder / BENIGN_FILE, "I-Alpaca"),
        refusals=_refusals(folder / REFUSAL_FILE),
        xstest=_xstest(folder / XSTEST_FILE),
        alpaca=_alpaca(folder / ALPACA_FILE),
    )


# --------------------------------------------------------------------------- readers


def _read_json(path: Path) -> tuple[Any, str]:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text), text
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} line {error.lineno}: not valid JSON ({error.msg})") from None


def _item_line(text: str, index: int, key: str | None) -> int:
    """The line on which the ``index``-th item of the top-level array (or of ``key``'s array) starts."""
    decoder = json.JSONDecoder()
    start = 0
    if key is not None:
        match = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text)
        if match is None:
            return 1
        start = match.end()
    else:
        start = text.index("[") + 1
    position = start
    for i in range(index + 1):
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if i == index:
            return text.count("\n", 0, position) + 1
        _, position = decoder.raw_decode(text, position)
    return text.count("\n", 0, position) + 1


def _instruction_set(path: Path, name: str) -> list[Prompt]:
    """``{"instructions": [str, ...], "inputs": [str, ...]?}``: an input, when present, follows its instruction."""
    data, text = _read_json(path)
    if not isinstance(data, dict) or "instructions" not in data:
        raise ValueError(f"{path} line 1: expected a JSON object with the key 'instructions' (a list of prompts)")
    instructions = data["instructions"]
    if not isinstance(instructions, list) or not instructions:
        raise ValueError(f"{path}: 'instructions' must be a non-empty list of strings")
    inputs = data.get("inputs") or [""] * len(instructions)
    prompts = []
    for i, instruction in enumerate(instructions):
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(
                f"{path} line {_item_line(text, i, 'instructions')}: instruction {i} must be a non-empty string, "
                f"got {instruction!r}"
            )
        extra = inputs[i] if i < len(inputs) and isinstance(inputs[i], str) else ""
        prompts.append(Prompt(f"{name}/{i}", _join(instruction, extra)))
    return prompts


def _join(instruction: str, extra: str) -> str:
    # the reference code's plain template: the input, when there is one, after the instruction
    return f"{instruction.strip()} {extra.strip()}" if extra and extra.strip() else instruction.strip()


def _refusals(path: Path) -> list[Prompt]:
    data, text = _read_json(path)
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path} line 1: expected a non-empty JSON list of {{instruction, output}} objects")
    prompts = []
    for i, row in enumerate(data):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip() for k in ("instruction", "output")):
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"{path} line {_item_line(text, i, None)}: item {i} needs non-empty 'instruction' and 'output' "
                f"strings, has {keys}"
            )
        prompts.append(Prompt(f"refusal/{i}", _join(row["instruction"], row.get("input") or ""), answer=row["output"].strip()))
    return prompts


def _xstest(path: Path) -> list[Prompt]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("id", "prompt", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} line 1: the header lacks the column(s) {', '.join(missing)}")
        prompts = []
        for row in reader:
            if row["label"] not in XSTEST_LABELS or not (row["prompt"] or "").strip():
                raise ValueError(
                    f"{path} line {reader.line_num}: needs a prompt and a label safe or unsafe, got "
                    f"label {row['label']!r}"
                )
            prompts.append(Prompt(f"xstest/{row['id']}", row["prompt"].strip(), label=row["label"]))
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def _alpaca(path: Path) -> list[Prompt]:
    prompts = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number}: not valid JSON ({error.msg})") from None
            instance = (row.get("instances") or [row])[0] if isinstance(row, dict) else None
            instruction = row.get("instruction") if isinstance(row, dict) else None
            output = instance.get("output") if isinstance(instance, dict) else None
            if not isinstance(instruction, str) or not isinstance(output, str) or not output.strip():
                raise ValueError(
                    f"{path} line {number}: needs 'instruction' and an 'output' (flat or in 'instances'), "
                    f"has {sorted(row) if isinstance(row, dict) else type(row).__name__}"
                )
            name = row.get("id", f"line{number}")
            prompts.append(Prompt(f"alpaca/{name}", _join(instruction, instance.get("input") or ""), answer=output.strip()))
    if not prompts:
        raise ValueError(f"{path}: no rows")
    return prompts
