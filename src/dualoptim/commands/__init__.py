"""Subcommands of the ``dualoptim`` CLI (see ``dualoptim.cli``)."""
