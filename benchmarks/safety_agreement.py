"""Agreement of the string refusal classifier with human labels (docs/safety.md, "Judge agreement").

Two sources of labelled answers:

**XSTest's human-labelled completions of real instruct models** (Röttger et al., 2024; the folder
``model_completions/`` of https://github.com/paul-rottger/exaggerated-safety: GPT-4, Llama-2-70b-chat
with and without its original system prompt, Mistral-7B-Instruct with and without a guardrail
prompt; 450 prompts each, two annotators and a final label per completion)::

    git clone https://github.com/paul-rottger/exaggerated-safety /tmp/xstest
    python benchmarks/safety_agreement.py xstest /tmp/xstest        # writes benchmarks/results/safety-agreement/
    python benchmarks/safety_agreement.py xstest /tmp/xstest --show-dev-errors   # the development part's errors

The 450 prompt ids are split once, seeded (:data:`SPLIT_SEED`), into a **development** half (whose
errors one may read to correct the rules) and a **held-aside** half (all five models' answers to
those prompts; only its figure is reported, its errors are never printed). XSTest's
``3_partial_refusal`` counts as a refusal (the answer declines at least part of the request; XSTest
reports full and partial refusals together as refusal behaviour); the figures with partial
refusals left out are reported beside. The held-aside part's openings (the text the classifier
reads) are written to ``tests/safety/data/xstest_heldaside.jsonl``, from which
``tests/safety/test_judge.py`` recomputes the held-aside figure.

**Hand labels of this project's tiny models' answers**, two steps::

    # 1. draw a sample of generated answers from a safety output folder's run records, half of them
    #    called refusals by the string classifier and half not (distinct answers only), to label by hand
    python benchmarks/safety_agreement.py sample benchmarks/results/safety-tiny --n 100 > sample.jsonl
    # 2. after filling in each row's "hand_refusal" (true / false) by reading the answer:
    python benchmarks/safety_agreement.py score tests/safety/data/refusal_hand_labels.jsonl

A row holds the run it came from, the prompt's id, the answer and the label: never the prompt's
text (the prompt sets are research-use data and are not committed).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from dualoptim.io import write_json_atomic, write_text_atomic
from dualoptim.metrics.refusal import OPENING_CHARS, OPENING_SENTENCES, is_refusal, opening
from dualoptim.safety.judge import cohen_kappa

ROOT = Path(__file__).resolve().parents[1]
#: the five completion files of XSTest v2 (model_completions/xstest_v2_completions_<model>.csv)
XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")
XSTEST_LABELS = {"1_full_compliance": False, "2_full_refusal": True, "3_partial_refusal": True}
#: the seed of the development / held-aside split of the prompt ids
SPLIT_SEED = 0
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "safety-agreement" / "xstest.json"
DEFAULT_FIXTURE = ROOT / "tests" / "safety" / "data" / "xstest_heldaside.jsonl"


def sample(out: Path, n: int, seed: int) -> list[dict]:
    pool: dict[str, dict] = {}
    for path in sorted((out / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        for name, answers in (record.get("answers") or {}).items():
            for entry in answers:
                if "refusal" in entry and entry["answer"] not in pool:
                    pool[entry["answer"]] = {"source": path.stem, "set": name, "id": entry["id"], "answer": entry["answer"]}
    rng = random.Random(seed)
    rows = list(pool.values())
    rng.shuffle(rows)
    refusals = [r for r in rows if is_refusal(r["answer"])][: n // 2]
    others = [r for r in rows if not is_refusal(r["answer"])][: n - len(refusals)]
    chosen = refusals + others
    rng.shuffle(chosen)
    return [{**r, "hand_refusal": None} for r in chosen]


def agreement(human: Sequence[bool], judged: Sequence[bool]) -> dict:
    """Accuracy, Cohen's kappa, refusal precision / recall and the confusion counts of two raters
    (``human`` the reference). Precision: share of judged refusals that people call refusals;
    recall: share of people's refusals that the judge finds."""
    result = cohen_kappa(human, judged)
    both = sum(h and j for h, j in zip(human, judged))
    human_only = sum(h and not j for h, j in zip(human, judged))
    judge_only = sum(j and not h for h, j in zip(human, judged))
    result = {
        "n": result["n"],
        "accuracy": result["agreement"],
        "kappa": result["kappa"],
        "refusal precision": both / (both + judge_only) if both + judge_only else None,
        "refusal recall": both / (both + human_only) if both + human_only else None,
        "human refusal rate": sum(human) / len(human),
        "judged refusal rate": sum(judged) / len(judged),
        "confusion": {
            "both refusal": both,
            "human only": human_only,
            "judge only": judge_only,
            "neither": len(human) - both - human_only - judge_only,
        },
    }
    return result


def score(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    unlabelled = [r["id"] for r in rows if not isinstance(r.get("hand_refusal"), bool)]
    if unlabelled:
        raise ValueError(f"{path}: {len(unlabelled)} rows have no hand_refusal label, e.g. {unlabelled[:3]}")
    hand = [r["hand_refusal"] for r in rows]
    string = [is_refusal(r["answer"], where=f"{path.name} row {i + 1} ({r['id']})") for i, r in enumerate(rows)]
    result = cohen_kappa(hand, string)
    result["hand refusals"] = sum(hand)
    result["string refusals"] = sum(string)
    result["confusion"] = {
        "both refusal": sum(h and s for h, s in zip(hand, string)),
        "hand only": sum(h and not s for h, s in zip(hand, string)),
        "string only": sum(s and not h for h, s in zip(hand, string)),
        "neither": sum(not h and not s for h, s in zip(hand, string)),
    }
    return result


def load_xstest(folder: Path) -> list[dict]:
    """Every labelled completion of the five XSTest v2 files: ``{id, model, type, completion, label}``."""
    base = folder / "model_completions" if (folder / "model_completions").is_dir() else folder
    rows: list[dict] = []
    for model in XSTEST_MODELS:
        path = base / f"xstest_v2_completions_{model}.csv"
        if not path.is_file():
            raise ValueError(f"{path} does not exist; expected the model_completions/ folder of paul-rottger/exaggerated-safety")
        with path.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                if row.get("final_label") not in XSTEST_LABELS:
                    raise ValueError(f"{path.name} line {line}: final_label {row.get('final_label')!r} is not one of {sorted(XSTEST_LABELS)}")
                rows.append({"id": row["id"], "model": model, "type": row["type"], "completion": row["completion"],
                             "label": row["final_label"]})  # fmt: skip
    return rows


def split_ids(ids: Sequence[str], seed: int = SPLIT_SEED) -> tuple[set[str], set[str]]:
    """(development, held-aside): the distinct prompt ids in numeric order, shuffled with ``seed``, halved."""
    ordered = sorted(set(ids), key=lambda i: (len(i), i))
    random.Random(seed).shuffle(ordered)
    half = len(ordered) // 2
    return set(ordered[:half]), set(ordered[half:])


def figures(rows: Sequence[dict]) -> dict:
    """Agreement of the classifier with XSTest's final labels on ``rows`` (each with ``verdict``):
    overall with partial refusals as refusals, without the partial refusals, and per model."""
    human = [XSTEST_LABELS[r["label"]] for r in rows]
    judged = [r["verdict"] for r in rows]
    clear = [r for r in rows if r["label"] != "3_partial_refusal"]
    out = agreement(human, judged)
    out["partial refusals"] = len(rows) - len(clear)
    out["without partial refusals"] = agreement([XSTEST_LABELS[r["label"]] for r in clear], [r["verdict"] for r in clear])
    out["per model"] = {
        model: agreement([XSTEST_LABELS[r["label"]] for r in rows if r["model"] == model], [r["verdict"] for r in rows if r["model"] == model])
        for model in sorted({r["model"] for r in rows})
    }
    return out


def xstest(folder: Path, out: Path, fixture: Path | None, show_dev_errors: bool) -> dict:
    rows = load_xstest(folder)
    for r in rows:
        r["verdict"] = is_refusal(r["completion"], where=f"{r['model']} {r['id']}")
    dev_ids, held_ids = split_ids([r["id"] for r in rows])
    dev = [r for r in rows if r["id"] in dev_ids]
    held = [r for r in rows if r["id"] in held_ids]
    if show_dev_errors:
        for r in dev:
            if r["verdict"] != XSTEST_LABELS[r["label"]]:
                print(f"{r['model']:16} {r['label']:18} judged {'refusal' if r['verdict'] else 'compliance':10} {r['completion'][:200]!r}")
    result = {
        "command": "python benchmarks/safety_agreement.py xstest <clone of paul-rottger/exaggerated-safety>",
        "source": "XSTest v2 model completions with human labels (final_label), github.com/paul-rottger/exaggerated-safety "
                  "model_completions/, Röttger et al. 2024 (NAACL); prompts CC BY 4.0, completions under the models' licences",
        "judge": f"dualoptim.metrics.refusal.is_refusal (opening: {OPENING_SENTENCES} sentences within {OPENING_CHARS} characters; English only)",
        "label mapping": "1_full_compliance: not a refusal; 2_full_refusal and 3_partial_refusal: refusal",
        "split": f"prompt ids shuffled with random.Random({SPLIT_SEED}) and halved: {len(dev_ids)} development prompts "
                 f"(errors read to correct the rules), {len(held_ids)} held aside (figure only); all five models' answers per prompt",
        "held aside": figures(held),
        "development": figures(dev),
    }  # fmt: skip
    write_json_atomic(out, result)
    if fixture is not None:
        lines = []
        for r in sorted(held, key=lambda r: (r["model"], len(r["id"]), r["id"])):
            text = opening(r["completion"])
            if is_refusal(text) != r["verdict"]:  # the fixture must judge exactly as the full answer does
                raise ValueError(f"{r['model']} {r['id']}: its opening is judged differently from the whole answer")
            lines.append(json.dumps({"id": r["id"], "model": r["model"], "label": r["label"], "opening": text}, ensure_ascii=False))
        write_text_atomic(fixture, "\n".join(lines) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    s = sub.add_parser("sample")
    s.add_argument("out", type=Path)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("score")
    c.add_argument("labels", type=Path)
    x = sub.add_parser("xstest")
    x.add_argument("folder", type=Path, help="a clone of paul-rottger/exaggerated-safety (or its model_completions/ folder)")
    x.add_argument("--out", type=Path, default=DEFAULT_OUT)
    x.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, help="where the held-aside openings go")
    x.add_argument("--no-fixture", action="store_true")
    x.add_argument("--show-dev-errors", action="store_true", help="print the development part's disagreements")
    args = parser.parse_args(argv)
    try:
        if args.step == "sample":
            for row in sample(args.out, args.n, args.seed):
                print(json.dumps(row, ensure_ascii=False))
        elif args.step == "score":
            print(json.dumps(score(args.labels), indent=2))
        else:
            result = xstest(args.folder, args.out, None if args.no_fixture else args.fixture, args.show_dev_errors)
            print(json.dumps({k: {m: result[k][m] for m in ("n", "accuracy", "kappa", "refusal precision", "refusal recall")}
                              for k in ("held aside", "development")}, indent=2))  # fmt: skip
    except ValueError as error:
        parser.exit(2, f"safety_agreement {args.step}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
