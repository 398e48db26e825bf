"""Chain of thought: the arithmetic (and user) tasks, answer cleansing, prompts for the five modes, and Auto-CoT's
demonstration builder. The jobs that run them are in `workbench.recipes.cot`."""
