"""Causal-LM unlearning on TOFU: data formats, losses, the Trainer subclass, the TOFU and "closer
look" metrics, the benchmark and its report.

Built on the shared core (strategies, config, schedule, runs); imports no other task. Needs the
``llm`` install extra (transformers, tokenizers, accelerate).
"""

__all__: list[str] = []
