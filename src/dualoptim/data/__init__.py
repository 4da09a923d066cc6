"""Data sets and forget/retain splits."""
