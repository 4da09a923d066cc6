"""Evaluation metrics: accuracy, membership inference, gap/std aggregation, TOFU metrics."""
