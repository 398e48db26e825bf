"""Save what a method trained, and put it back onto a freshly loaded backbone.

Only parameters that received gradients are saved (safetensors), with the resolved run config, so a
prompt-tuning run is a few kilobytes and a reload rebuilds exactly the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workbench.errors import WorkbenchError
from workbench.training.classifier import PromptClassifier

ARTIFACT_DIR = "method"
WEIGHTS = "trained.safetensors"
CONFIG = "run_config.json"


def trained_state(model: PromptClassifier) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trained(model: PromptClassifier, folder: Path, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(trained_state(model), str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(config, indent=1, default=str))


def load_trained(model: PromptClassifier, folder: Path) -> None:
    state = load_file(str(folder / WEIGHTS))
    own = dict(model.named_parameters())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise WorkbenchError(f"{folder / WEIGHTS}: {len(unknown)} saved tensors do not fit this model "
                             f"(e.g. {unknown[0]}); was it trained with another method or model?")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor.to(own[name].device, own[name].dtype))
