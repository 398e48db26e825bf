"""Recipes: end-to-end jobs built from the components (tasks, prompts, methods, training, tracking)."""
