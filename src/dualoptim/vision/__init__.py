"""Image classification: data sets and splits, models, methods (one file each), masks, the loop,
metrics, the multi-seed benchmark with gap to retrain, the forget-lr sweep and the report.

Built on the shared core (strategies, config, schedule, runs); imports no other task.
"""

__all__: list[str] = []
