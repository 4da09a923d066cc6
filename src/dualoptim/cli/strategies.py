"""List the strategies (how the forget and retain objectives are optimised) that every task accepts."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from dualoptim.strategies import STRATEGIES

    width = max(len(name) for name in STRATEGIES)
    for name in STRATEGIES:
        strategy = STRATEGIES.get(name)
        notes = []
        if strategy.joint:
            notes.append("joint")
        if strategy.rates_from:
            notes.append(f"learning rates of {strategy.rates_from} unless given")
        extra = f" ({'; '.join(notes)})" if notes else ""
        print(f"{name:<{width}}  {strategy.description}{extra}")
    return 0
