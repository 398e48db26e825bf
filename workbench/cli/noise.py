"""Library noise on the console, hidden unless `workbench --verbose`: transformers' "Loading weights" bar and
its warnings ("Some weights of ... were not initialized"), MLflow's and alembic's INFO lines, Optuna's INFO lines,
datasets' "Saving the dataset" bar.

Only the command line quiets them, in its own process: the library leaves logging alone, so a Python user keeps
each library's defaults. Our own messages are prints and our own progress bars, which this does not touch.

Each library's own switch runs right after the library is first imported (at once if it already is): importing
torch, transformers, MLflow or Optuna here would make `workbench --help` take seconds. MLflow and Optuna set their
loggers' levels while they are imported, so a level set on those loggers beforehand would be overwritten.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
from collections.abc import Callable
from types import ModuleType


def _transformers(module: ModuleType) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # also Hugging Face Hub's bars


def _datasets(module: ModuleType) -> None:
    from datasets.utils import disable_progress_bars, logging as ds_logging

    ds_logging.set_verbosity_error()
    disable_progress_bars()


def _mlflow(module: ModuleType) -> None:
    for name in ("mlflow", "alembic"):  # alembic: the tracking database's migrations
        logging.getLogger(name).setLevel(logging.WARNING)


def _optuna(module: ModuleType) -> None:
    module.logging.set_verbosity(module.logging.WARNING)


SWITCHES: dict[str, Callable[[ModuleType], None]] = {"transformers": _transformers, "datasets": _datasets,
                                                     "mlflow": _mlflow, "optuna": _optuna}


def _apply(switch: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        switch(module)
    except Exception:  # a library that changed its switches: its noise shows, the command still runs
        pass


class _ThenSwitch(importlib.abc.Loader):
    """The library's own loader, then its switch."""

    def __init__(self, loader: importlib.abc.Loader, switch: Callable[[ModuleType], None]):
        self.loader, self.switch = loader, switch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the library sees its own loader
        self.loader.exec_module(module)
        _apply(self.switch, module)


class _WhenImported(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it hands a pending library's spec, found by the other finders, a loader that runs
    the library's switch once its module has been executed."""

    def __init__(self, switches: dict[str, Callable[[ModuleType], None]]):
        self.pending = dict(switches)

    def find_spec(self, name, path=None, target=None):
        switch = self.pending.pop(name, None)
        if switch is None:
            return None
        spec = importlib.util.find_spec(name)  # the other finders' answer: this one no longer knows `name`
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ThenSwitch(spec.loader, switch)
        return spec


def quiet() -> None:
    """Quiet the libraries in `SWITCHES` for the rest of this process."""
    if any(isinstance(f, _WhenImported) for f in sys.meta_path):
        return
    pending = {}
    for name, switch in SWITCHES.items():
        if name in sys.modules:
            _apply(switch, sys.modules[name])
        else:
            pending[name] = switch
    sys.meta_path.insert(0, _WhenImported(pending))


__all__ = ["quiet"]
