"""Regenerate table.md and the PNG plots of a benchmark folder from its results.json."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder holding results.json (written by dualoptim bench)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from dualoptim.io import read_json
    from dualoptim.reports import write_report
    from dualoptim.reports.tables import markdown_table

    try:
        results = read_json(Path(args.dir) / "results.json")
        if not isinstance(results, dict) or "rows" not in results or "retrain" not in results:
            raise ValueError(
                f"{Path(args.dir) / 'results.json'} is not a benchmark results file (no rows/retrain)"
            )
    except (FileNotFoundError, ValueError) as error:
        print(f"dualoptim report: error: {error}", file=sys.stderr)
        return 2
    written = write_report(results, args.dir)
    print(markdown_table(results))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
