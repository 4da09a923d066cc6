"""Agreement of the string refusal classifier with hand labels (docs/safety.md, "Judge agreement").

Two steps:

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
import json
import random
import sys
from pathlib import Path

from dualoptim.safety.judge import cohen_kappa, is_refusal


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


def score(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    unlabelled = [r["id"] for r in rows if not isinstance(r.get("hand_refusal"), bool)]
    if unlabelled:
        raise ValueError(f"{path}: {len(unlabelled)} rows have no hand_refusal label, e.g. {unlabelled[:3]}")
    hand = [r["hand_refusal"] for r in rows]
    string = [is_refusal(r["answer"]) for r in rows]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    s = sub.add_parser("sample")
    s.add_argument("out", type=Path)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("score")
    c.add_argument("labels", type=Path)
    args = parser.parse_args(argv)
    if args.step == "sample":
        for row in sample(args.out, args.n, args.seed):
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(json.dumps(score(args.labels), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
