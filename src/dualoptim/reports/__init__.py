"""Helpers every task's report uses: markdown tables (``tables``) and PNG plots (``plots``).

Reports are made from results.json alone, never edited by hand; each task's ``report`` module
(``dualoptim.vision.report``, ``dualoptim.llm.report``) lays out its own table and figures.
"""

__all__: list[str] = []
