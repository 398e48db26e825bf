"""Prompt Workbench: prompt-based learning and instruction data, with honest experiment tracking."""

__version__ = "0.1.0"
