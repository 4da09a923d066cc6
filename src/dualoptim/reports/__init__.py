"""results.json -> markdown tables and PNG plots."""
