"""Recipes: the YAML schema, loading with `extends`/profiles/`--set`, and line-numbered errors."""
