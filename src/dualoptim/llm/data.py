"""TOFU and the real-person set: loading, forget/retain splits, prompt formatting and tokenisation.

TOFU (Maini et al., 2024) is 200 fictitious authors x 20 question/answer pairs. A forget split
(``forget01``, ``forget05``, ``forget10``) holds several forget tasks marked by ``task_id``; the
retain set is every other row of the 4,000. Losses see answer tokens only: the question's labels
are ``-100``.

Two sources with one layout (JSON Lines files named like the hub's configs):

* a local folder (``../shared/data/tofu`` in this workplace; no extra dependency);
* the Hugging Face hub (``locuslab/TOFU`` through ``datasets``, imported only on that path).

The real-person set of the "closer look" study (Yuan et al., 2025) and DualOptim+ (``data.dataset:
real_world``, :class:`RealWorldSource`) has the same shape: 20 real people x 20 questions to forget
(``forget.json``, ``task_id`` 1-20: one person each; ``forget_perturbed.json``: the same rows with
paraphrased and perturbed answers) and neighbour people. The two neighbour files hold *different*
people: ``neighbor.json``'s 20 are the retain set that regularises unlearning, and
``neighbor_perturbed.json``'s 20 others are the evaluation set that measures utility (the talk's
"40 neighbours, 20 regularising and 20 measuring"). Unlearning trains on ``answer`` (the instruct
model's own long answers); evaluation compares with ``golden_answer`` (short), as the reference's
``real_world.yaml`` does. Task ``all`` forgets every person at once (the papers' setting).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dualoptim.config import option

__all__ = ["AlternatingSampler", "DATASETS", "EVAL_FILES", "HUB_ID", "IGNORE_INDEX", "QAFormat", "REAL_WORLD_ALL", "REAL_WORLD_FILES", "REQUIRED_FILES", "SPLITS", "RealWorldSource", "TofuSource", "TofuSplit", "UnlearningCollator", "UnlearningDataset", "all_rows", "answer_token_count", "check_tokenizer", "encode_prompt", "encode_qa", "encode_rows", "load_split", "make_source", "pad_batch", "task_ids"]

SPLITS = ("forget01", "forget05", "forget10")
#: files the local folder must hold (the hub has the same names as configs).
REQUIRED_FILES = ("forget10.json", "retain10.json", "idontknow.jsonl")
EVAL_FILES = {
    "forget": "{split}_perturbed.json",
    "retain": "retain_perturbed.json",
    "real_authors": "real_authors_perturbed.json",
    "world_facts": "world_facts_perturbed.json",
}
HUB_ID = "locuslab/TOFU"
IGNORE_INDEX = -100
#: data.dataset -> its evaluation sets (the first is the forget set, the second the retain side)
DATASETS = {
    "tofu": ("forget", "retain", "real_authors", "world_facts"),
    "real_world": ("forget", "neighbor"),
}
#: real_world file -> the keys each of its rows must have
REAL_WORLD_FILES = {
    "forget.json": ("name", "question", "answer", "golden_answer", "task_id"),
    "neighbor.json": ("name", "question", "answer", "golden_answer"),
    "forget_perturbed.json": ("question", "answer", "golden_answer", "paraphrased_answer", "perturbed_answer", "task_id"),
    "neighbor_perturbed.json": ("question", "answer", "golden_answer", "paraphrased_answer", "perturbed_answer"),
}
#: the real_world task that forgets all 20 people at once (the papers' setting)
REAL_WORLD_ALL = "all"
IDK_FILE = "idontknow.jsonl"


@dataclass(frozen=True)
class QAFormat:
    """How a question/answer pair becomes text: explicit tags, or the tokenizer's chat template."""

    question_start: str = option("text before the question", "Question: ")
    question_end: str = option("text after the question", "\n")
    answer_start: str = option("the answer tag that ends the prompt", "Answer:")
    answer_prefix: str = option("text between the answer tag and the answer (a space for tag-style formats)", " ")
    chat_template: bool | str = option(
        'format the question with the tokenizer\'s chat template instead of the tags: "auto" (when the '
        "tokenizer has one: instruct and chat models), true (required), false (the tags)",
        "auto",
    )
    add_bos: bool = option(
        "start the prompt with the tokenizer's BOS token (Llama tokenizers do; TOFU's Phi-1.5 runs do not)", True
    )

    def uses_chat_template(self, tokenizer: Any = None) -> bool:
        """Whether prompts go through the tokenizer's chat template (``"auto"``: when it has one)."""
        has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
        if self.chat_template is True and not has_template:
            name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
            raise ValueError(
                f"data.format.chat_template is true but the tokenizer {name!r} has no chat template; "
                "set it to auto or false"
            )
        if isinstance(self.chat_template, str) and self.chat_template != "auto":
            raise ValueError(f"data.format.chat_template must be true, false or auto, got {self.chat_template!r}")
        return has_template if self.chat_template == "auto" else bool(self.chat_template)

    def prompt(self, question: str, tokenizer: Any = None) -> str:
        if self.uses_chat_template(tokenizer):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
            )
        return f"{self.question_start}{question}{self.question_end}{self.answer_start}"


class TofuSource:
    """Reads TOFU's JSON files from a local folder or from the hub."""

    def __init__(self, root: str | Path | None = None, hub: bool = False) -> None:
        self.hub = hub
        if hub:
            self.root = None
            return
        from dualoptim.paths import default_data_root

        self.root = Path(root) if root is not None else default_data_root() / "tofu"
        if not self.root.is_dir():
            raise FileNotFoundError(f"TOFU data folder {str(self.root)!r} does not exist")
        for name in REQUIRED_FILES:
            if not (self.root / name).is_file():
                raise FileNotFoundError(f"TOFU data folder {str(self.root)!r} is missing the file {name!r}")

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of one file (``forget10.json``, ``idontknow.jsonl``, ...)."""
        if self.hub:
            return _hub_rows(name)
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"TOFU data folder {str(self.root)!r} is missing the file {name!r}")
        with path.open(encoding="utf-8") as handle:
            if name.endswith(".jsonl") and name.startswith("idontknow"):
                return [{"answer": line.strip()} for line in handle if line.strip()]
            return [json.loads(line) for line in handle if line.strip()]


def _hub_rows(name: str) -> list[dict[str, Any]]:
    if name.startswith("idontknow"):
        # the refusal strings are a plain file in the hub repository, not a datasets config
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(HUB_ID, name, repo_type="dataset")
        with open(path, encoding="utf-8") as handle:
            return [{"answer": line.strip()} for line in handle if line.strip()]
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "loading TOFU from the hub needs `pip install dualoptim[hub]` (datasets)"
        ) from error
    config = name.removesuffix(".json")
    return [dict(row) for row in datasets.load_dataset(HUB_ID, config, split="train")]


class RealWorldSource:
    """Reads the real-person set (``forget.json``, ``neighbor.json`` and their ``_perturbed``
    versions, JSON Lines) from a local folder, checking every row's keys as it reads.

    The refusal strings of IDK losses are TOFU's ``idontknow.jsonl`` (the reference code uses the
    same file for both tasks): ``idk_path``, else ``idontknow.jsonl`` in the folder, else in the
    sibling ``tofu/`` folder of the data root.
    """

    hub = False

    def __init__(self, root: str | Path | None = None, idk_path: str | Path | None = None) -> None:
        from dualoptim.paths import default_data_root

        self.root = Path(root) if root is not None else default_data_root() / "real_world"
        if not self.root.is_dir():
            raise FileNotFoundError(f"real_world data folder {str(self.root)!r} does not exist")
        missing = [name for name in REAL_WORLD_FILES if not (self.root / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"real_world data folder {str(self.root)!r} is missing the file(s) {', '.join(missing)}"
            )
        candidates = [Path(idk_path)] if idk_path else [self.root / IDK_FILE, self.root.parent / "tofu" / IDK_FILE]
        self.idk_path = next((c for c in candidates if c.is_file()), None)
        if self.idk_path is None:
            raise FileNotFoundError(
                f"no refusal strings for the real_world task: none of {', '.join(repr(str(c)) for c in candidates)} "
                "exists (set data.idk_path to TOFU's idontknow.jsonl)"
            )

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of one file, each checked for the keys :data:`REAL_WORLD_FILES` lists."""
        if name == IDK_FILE:
            with self.idk_path.open(encoding="utf-8") as handle:
                return [{"answer": line.strip()} for line in handle if line.strip()]
        if name not in REAL_WORLD_FILES:
            raise FileNotFoundError(
                f"real_world has no file {name!r}; its files: {', '.join(REAL_WORLD_FILES)}"
            )
        path, keys, rows = self.root / name, REAL_WORLD_FILES[name], []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON object ({error.msg})") from None
                lacking = [k for k in keys if not isinstance(row, dict) or k not in row]
                if lacking:
                    raise ValueError(
                        f"{path}:{number}: the row has no {', '.join(repr(k) for k in lacking)} "
                        f"(each row of {name} needs {', '.join(keys)})"
                    )
                rows.append(row)
        return rows


def make_source(dataset: str = "tofu", path: str | Path | None = None, hub: bool = False,
                idk_path: str | Path | None = None) -> TofuSource | RealWorldSource:  # fmt: skip
    """The reader of ``dataset`` (``data.dataset``): TOFU (local or hub) or the real-person set (local)."""
    if dataset == "tofu":
        return TofuSource(path, hub=hub)
    if dataset == "real_world":
        if hub:
            raise ValueError("the real_world set is read from a local folder only (data.source: local)")
        return RealWorldSource(path, idk_path)
    raise ValueError(f"unknown data.dataset {dataset!r}; valid: {', '.join(DATASETS)}")


@dataclass
class TofuSplit:
    """One forget task: the forget rows, the retain rows (all other rows) and refusal answers."""

    split: str
    task: str
    forget: list[dict[str, Any]]
    retain: list[dict[str, Any]]
    idk: list[str]
    eval_sets: dict[str, list[dict[str, Any]]]
    #: the rows a model "never taught the forget set" learns (Forget Quality's reference); None: ``retain``
    reference: list[dict[str, Any]] | None = None

    @property
    def reference_rows(self) -> list[dict[str, Any]]:
        return self.retain if self.reference is None else self.reference


def all_rows(source: TofuSource | RealWorldSource) -> list[dict[str, Any]]:
    """The 4,000 TOFU rows: every task of ``forget10`` plus ``retain10`` (the hub's ``full``); for
    the real-person set its 1,200 rows: the forget people, the retain neighbours and the evaluation
    neighbours (what a from-scratch target learns, as an instruct model knows all 60 people)."""
    if isinstance(source, RealWorldSource):
        names = ("forget.json", "neighbor.json", "neighbor_perturbed.json")
        return [_qa(r) for name in names for r in source.rows(name)]
    if source.hub:
        return [{"question": r["question"], "answer": r["answer"]} for r in source.rows("full.json")]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in source.rows("forget10.json")]
    rows += [{"question": r["question"], "answer": r["answer"]} for r in source.rows("retain10.json")]
    return rows


def _qa(row: dict[str, Any]) -> dict[str, Any]:
    return {"question": row["question"], "answer": row["answer"]}


def _real_world_task_ids(source: RealWorldSource) -> list[str]:
    ids = sorted({str(r["task_id"]) for r in source.rows("forget.json")}, key=lambda t: (len(t), t))
    return [REAL_WORLD_ALL, *ids]


def task_ids(source: TofuSource | RealWorldSource, split: str) -> list[str]:
    """The forget task ids a split offers (``"1"`` ... ``"10"``; real_world: ``all`` and one per person)."""
    if isinstance(source, RealWorldSource):
        return _real_world_task_ids(source)
    _check_split(split)
    ids = {str(row.get("task_id", "1")) for row in source.rows(f"{split}.json")}
    return sorted(ids, key=lambda t: (len(t), t))


def load_split(
    source: TofuSource | RealWorldSource, split: str = "forget10", task: str | int = "1",
    answer_key: str = "golden_answer",
) -> TofuSplit:  # fmt: skip
    """Forget rows of ``task`` in ``split``; retain rows = every other row of the 4,000.

    For the real-person set (``split`` is ignored) see :func:`load_real_world`; ``answer_key`` is
    the key its evaluation compares with."""
    if isinstance(source, RealWorldSource):
        return load_real_world(source, task, answer_key)
    _check_split(split)
    task = str(task)
    rows = source.rows(f"{split}.json")
    valid = sorted({str(r.get("task_id", "1")) for r in rows}, key=lambda t: (len(t), t))
    if task not in valid:
        raise ValueError(f"unknown task {task!r} for split {split!r}; valid: {', '.join(valid)}")
    forget = [
        {"question": r["question"], "answer": r["answer"]} for r in rows if str(r.get("task_id", "1")) == task
    ]
    forget_questions = {r["question"] for r in forget}
    retain = [r for r in all_rows(source) if r["question"] not in forget_questions]
    idk = [r["answer"] for r in source.rows("idontknow.jsonl")]
    eval_sets: dict[str, list[dict[str, Any]]] = {}
    for name, pattern in EVAL_FILES.items():
        file_rows = source.rows(pattern.format(split=split))
        if name == "forget":
            file_rows = [r for r in file_rows if str(r.get("task_id", "1")) == task]
        eval_sets[name] = file_rows
    return TofuSplit(split, task, forget, retain, idk, eval_sets)


def load_real_world(source: RealWorldSource, task: str | int = REAL_WORLD_ALL, answer_key: str = "golden_answer") -> TofuSplit:
    """One real-person forget task: ``all`` (the 400 rows of the 20 people: the papers' setting) or
    one person's ``task_id``. The retain set of unlearning is always ``neighbor.json``'s 400 rows
    (the reference's ``retain: neighbor``); the retain-only reference model learns every row but
    the forgotten people's (both neighbour files, and the other people of a one-person task).
    Evaluation sets: ``forget`` (the task's rows of ``forget_perturbed.json``) and ``neighbor``
    (``neighbor_perturbed.json``: other neighbours), with ``answer`` = the row's ``answer_key``."""
    task = str(task)
    valid = _real_world_task_ids(source)
    if task not in valid:
        raise ValueError(f"unknown real_world task {task!r}; valid: {', '.join(valid)}")
    if answer_key not in ("golden_answer", "answer"):
        raise ValueError(f"unknown data.eval_answer_key {answer_key!r}; valid: golden_answer, answer")

    def chosen(row: dict[str, Any]) -> bool:
        return task == REAL_WORLD_ALL or str(row["task_id"]) == task

    people = source.rows("forget.json")
    forget = [_qa(r) for r in people if chosen(r)]
    retain = [_qa(r) for r in source.rows("neighbor.json")]
    others = [_qa(r) for r in people if not chosen(r)]

    def evaluation(row: dict[str, Any]) -> dict[str, Any]:
        # the perturbed files repeat the question and answers; answer is what ROUGE and Probability compare with
        return {"question": row["question"], "answer": row[answer_key], "paraphrased_answer": row["paraphrased_answer"],
                "perturbed_answer": list(row["perturbed_answer"])}  # fmt: skip

    # round-robin over people, so that data.eval_size's first N items cover every person
    eval_sets = {
        "forget": [evaluation(r) for r in _interleave(source.rows("forget_perturbed.json")) if chosen(r)],
        "neighbor": [evaluation(r) for r in _interleave(source.rows("neighbor_perturbed.json"))],
    }
    idk = [r["answer"] for r in source.rows(IDK_FILE)]
    kept = retain + [_qa(r) for r in source.rows("neighbor_perturbed.json")] + others
    return TofuSplit("real_world", task, forget, retain, idk, eval_sets, reference=kept)


def _interleave(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows reordered person by person in turn: each person's first question, then each one's second, ..."""
    people: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        people.setdefault(str(row.get("name", "")), []).append(row)
    longest = max((len(p) for p in people.values()), default=0)
    return [p[i] for i in range(longest) for p in people.values() if i < len(p)]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- tokenisation


def check_tokenizer(tokenizer: Any, name: str = "tokenizer") -> None:
    """Padding needs a pad token: say so, naming the tokenizer, instead of failing deep in a collator."""
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"{name} ({getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)!r}) has no pad token; "
            "set model.pad_token in the config (for example to the eos token)"
        )


def encode_qa(
    tokenizer: Any, question: str, answer: str, fmt: QAFormat, max_length: int
) -> dict[str, list[int]]:
    """Token ids of prompt + answer + eos, with labels ``-100`` on the prompt.

    Prompt and answer are tokenised separately and concatenated, so the answer's tokens (and the
    answer-only losses) do not depend on how a tokenizer would merge across the boundary.
    """
    prompt_ids = encode_prompt(tokenizer, question, fmt)
    answer_ids = tokenizer(
        answer if fmt.uses_chat_template(tokenizer) else fmt.answer_prefix + answer, add_special_tokens=False
    )["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def encode_prompt(tokenizer: Any, question: str, fmt: QAFormat) -> list[int]:
    """Token ids of the prompt a model answers (BOS first when the tokenizer has one)."""
    text = fmt.prompt(question, tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if fmt.add_bos and bos is not None and not fmt.uses_chat_template(tokenizer) and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def answer_token_count(example: dict[str, list[int]]) -> int:
    return sum(1 for label in example["labels"] if label != IGNORE_INDEX)


def encode_rows(
    tokenizer: Any, rows: Sequence[dict[str, Any]], fmt: QAFormat, max_length: int, what: str
) -> list[dict[str, list[int]]]:
    """Encode rows; an error naming ``what`` when no row keeps a single answer token."""
    encoded = [encode_qa(tokenizer, r["question"], r["answer"], fmt, max_length) for r in rows]
    if not encoded or all(answer_token_count(e) == 0 for e in encoded):
        raise ValueError(
            f"the {what} set tokenises to nothing: {len(rows)} rows, no answer token within "
            f"max_length={max_length}"
        )
    return encoded


def pad_batch(
    examples: Sequence[dict[str, list[int]]], pad_id: int, left: bool = False
) -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` (and ``labels`` when present) to the longest example."""
    width = max(len(e["input_ids"]) for e in examples)
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": []}
    has_labels = "labels" in examples[0]
    if has_labels:
        out["labels"] = []
    for e in examples:
        gap = width - len(e["input_ids"])
        ids, mask = e["input_ids"], [1] * len(e["input_ids"])
        labels = e.get("labels")
        if left:
            out["input_ids"].append([pad_id] * gap + ids)
            out["attention_mask"].append([0] * gap + mask)
            if has_labels:
                out["labels"].append([IGNORE_INDEX] * gap + labels)
        else:
            out["input_ids"].append(ids + [pad_id] * gap)
            out["attention_mask"].append(mask + [0] * gap)
            if has_labels:
                out["labels"].append(labels + [IGNORE_INDEX] * gap)
    return {key: torch.tensor(value, dtype=torch.long) for key, value in out.items()}


class UnlearningDataset(torch.utils.data.Dataset):
    """An item pairs a forget row with a retain row (and refusal versions of both questions).

    Keyed by ``(forget row, retain row)``: :class:`AlternatingSampler` yields those keys, so that
    forget steps walk the forget set and retain steps the retain set, each row once per pass (what
    the Trainer uses). An integer key ``i`` pairs forget row ``i mod |forget|`` with a shuffled
    retain row (the length is that of the larger set; the smaller one cycles). Which half a step
    uses is decided by the trainer from the optimizer step count, never from the item, so every
    micro-batch of one optimizer step (on every process) serves the same objective.
    """

    def __init__(
        self,
        tokenizer: Any,
        split: TofuSplit,
        fmt: QAFormat,
        max_length: int,
        seed: int = 0,
    ) -> None:
        check_tokenizer(tokenizer)
        self.forget = encode_rows(tokenizer, split.forget, fmt, max_length, "forget")
        self.retain = encode_rows(tokenizer, split.retain, fmt, max_length, "retain")
        rng = random.Random(seed)
        # one refusal per row, fixed by the seed (the research code draws one per item)
        self.forget_idk = [
            encode_qa(tokenizer, r["question"], rng.choice(split.idk), fmt, max_length) for r in split.forget
        ]
        self.retain_idk = [
            encode_qa(tokenizer, r["question"], rng.choice(split.idk), fmt, max_length) for r in split.retain
        ]
        self.retain_order = list(range(len(self.retain)))
        rng.shuffle(self.retain_order)

    def __len__(self) -> int:
        return max(len(self.forget), len(self.retain))

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, dict[str, list[int]]]:
        if isinstance(index, tuple):
            f, r = index
        else:
            f = index % len(self.forget)
            r = self.retain_order[index % len(self.retain)]
        return {
            "forget": self.forget[f],
            "forget_idk": self.forget_idk[f],
            "retain": self.retain[r],
            "retain_idk": self.retain_idk[r],
        }


class _Passes:
    """Row indices of one set, pass after pass: each pass a fresh permutation that covers every row once."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.generator = size, generator
        self.order: list[int] = []
        self.position = 0
        self.passes = 0

    def peek(self) -> int:
        if self.position == len(self.order):
            self.order, self.position = torch.randperm(self.size, generator=self.generator).tolist(), 0
            self.passes += 1
        return self.order[self.position]

    def take(self) -> int:
        row = self.peek()
        self.position += 1
        return row


class AlternatingSampler(torch.utils.data.Sampler):
    """Keys ``(forget row, retain row)`` of an :class:`UnlearningDataset`, in the order the Trainer
    consumes them: the reference's alternating sampler (CityU-MLO/DualOptimPlus,
    ``trainer/custom_sampler.py``), keyed by optimizer step.

    Optimizer step ``s`` takes ``rows_per_step`` consecutive keys (``per-device batch x gradient
    accumulation x processes``: accelerate hands process ``k`` the micro-batches ``k, k + W, ...``,
    so all of one step's micro-batches, on every process, are these keys). A forget step
    (``schedule.objective_at(s)``) draws its forget rows from a stream of passes over the forget set,
    each pass a fresh permutation: consecutive forget draws ``n |F| .. (n+1) |F| - 1`` visit every
    forget row exactly once. Retain steps draw from the same kind of stream over the retain set,
    cycling. The side a step does not use repeats the next row of its stream without consuming it
    (collated, never computed on). A joint step consumes both. ``steps x rows_per_step`` keys in all,
    the same on every process (one seeded generator), so a resumed run skips to the same place.

    The rows a step draws per pass: with ``|F| = 400`` and 40 rows a step, 10 forget steps are one
    pass, and 50 forget steps (300 steps at 1:5) are five, as in the reference scripts.
    """

    def __init__(
        self, forget_size: int, retain_size: int, *, schedule: Any, steps: int, rows_per_step: int,
        joint: bool = False, seed: int = 0,
    ) -> None:  # fmt: skip
        for name, value in (("forget_size", forget_size), ("retain_size", retain_size), ("steps", steps),
                            ("rows_per_step", rows_per_step)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AlternatingSampler {name} must be an integer >= 1, got {value!r}")
        self.forget_size, self.retain_size = forget_size, retain_size
        self.schedule, self.steps, self.rows_per_step = schedule, steps, rows_per_step
        self.joint, self.seed = joint, seed

    def __len__(self) -> int:
        return self.steps * self.rows_per_step

    def objective(self, step: int) -> str:
        return "joint" if self.joint else self.schedule.objective_at(step).value

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        forget, retain = _Passes(self.forget_size, generator), _Passes(self.retain_size, generator)
        for step in range(self.steps):
            objective = self.objective(step)
            for _ in range(self.rows_per_step):
                f = forget.peek() if objective == "retain" else forget.take()
                r = retain.peek() if objective == "forget" else retain.take()
                yield (f, r)


class UnlearningCollator:
    """Pads each part of the paired items separately: ``batch["forget"]["input_ids"]``, ..."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(
        self, items: Sequence[dict[str, dict[str, list[int]]]]
    ) -> dict[str, dict[str, torch.Tensor]]:
        return {part: pad_batch([item[part] for item in items], self.pad_id) for part in items[0]}
