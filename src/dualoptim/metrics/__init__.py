"""Metrics shared by every task: membership inference (``mia``) and aggregation over seeds (``aggregate``).

Task-specific metrics live in their task package (``dualoptim.vision.metrics``, ``dualoptim.llm.metrics``).
"""

__all__: list[str] = []
