"""Errors a user can act on. The CLI prints their message without a traceback."""


class WorkbenchError(Exception):
    """Bad input or a missing resource, reported before any work starts."""


class ConfigError(WorkbenchError):
    """A config, template, verbalizer or task file is malformed; the message names file, line or field.

    `field` is the dotted path of the config field at fault (`train.lr`, `method.r`) when there is one:
    the library names Python fields, and the command line maps them to its flags in one place.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill PID`), raised where the process was by the command line's handler: it
    unwinds like Ctrl-C, so every open MLflow run ends KILLED (not left RUNNING) and partial files are closed."""
