"""Safety alignment by unlearning: harmful answers forgotten or refusals taught, judged on four harmful
prompt sets and XSTest (``docs/safety.md``).

An LLM task: it imports the LLM task's losses, Trainer, models and formats (``dualoptim.llm``) and
the shared core; nothing imports it but the CLI. Needs the ``llm`` install extra.
"""

__all__: list[str] = []
