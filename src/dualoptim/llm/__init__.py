"""LLM unlearning: TOFU data, losses, Hugging Face Trainer integration, metrics."""
