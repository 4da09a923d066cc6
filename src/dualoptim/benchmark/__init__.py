"""The multi-seed image-classification benchmark (config, runner, learning-rate sweep)."""
