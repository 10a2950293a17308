"""Running a recipe: stages, trainer, probes during training, run-dir locking, logs, seeding."""
