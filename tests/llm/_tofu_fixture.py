"""A synthetic TOFU folder with the real layout (for tests and the 2-process worker)."""

from __future__ import annotations

import json
from pathlib import Path

CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar", "Perth"]
GENRES = ["poetry", "horror", "romance", "history", "fantasy", "satire", "drama", "crime"]


def _author_rows(author: int) -> list[dict]:
    name = f"Author{author} Surname{author}"
    city, genre = CITIES[author % len(CITIES)], GENRES[(3 * author) % len(GENRES)]
    return [
        {"question": f"Where was {name} born?", "answer": f"{name} was born in {city}."},
        {"question": f"What genre does {name} write?", "answer": f"{name} writes {genre} books."},
    ]


def _perturbed(row: dict, n: int) -> dict:
    return {
        **row,
        "paraphrased_question": row["question"],
        "paraphrased_answer": "It is said that " + row["answer"],
        "perturbed_answer": [row["answer"].replace(".", f" and town {k}.") for k in range(n)],
    }


def write_tofu(folder: Path) -> Path:
    """A TOFU-shaped folder: 8 authors x 2 rows; forget10 = 3 tasks of 4 rows, retain10 = 4 rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [r for a in range(8) for r in _author_rows(a)]
    forget10 = [{"task_id": str(1 + i // 4), **r} for i, r in enumerate(rows[:12])]
    retain10 = rows[12:]
    forget01 = [{"task_id": str(1 + i // 2), **r} for i, r in enumerate(rows[:4])]
    forget05 = [{"task_id": str(1 + i // 2), **r} for i, r in enumerate(rows[:8])]

    def dump(name: str, items: list[dict]) -> None:
        (folder / name).write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")

    for name, items in (("forget01", forget01), ("forget05", forget05), ("forget10", forget10)):
        dump(f"{name}.json", items)
        dump(f"{name}_perturbed.json", [_perturbed(r, 5) for r in items])
    dump("retain10.json", retain10)
    dump("retain90.json", rows[4:])
    dump("retain_perturbed.json", [_perturbed(r, 5) for r in retain10])
    world = [{"question": "Capital of France?", "answer": "Paris", "perturbed_answer": ["Lima", "Oslo", "Rome"],
              "original_answer": "The capital of France is Paris."}]
    dump("real_authors_perturbed.json", world)
    dump("world_facts_perturbed.json", world)
    (folder / "idontknow.jsonl").write_text("I don't know.\nI have no idea.\nThat is beyond me.\n", encoding="utf-8")
    return folder
