"""Small models and builders for the large ones."""
