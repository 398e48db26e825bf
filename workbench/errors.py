"""Errors a user can act on. The CLI prints their message without a traceback."""


class WorkbenchError(Exception):
    """Bad input or a missing resource, reported before any work starts."""


class ConfigError(WorkbenchError):
    """A config, template, verbalizer or task file is malformed; the message names file, line or field."""
