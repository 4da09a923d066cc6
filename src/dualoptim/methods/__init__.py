"""Unlearning methods: each returns the forget and the retain loss, nothing else."""
