"""A backbone, an optional input transform (soft prompts), and a head: the thing every method trains."""

from __future__ import annotations

import torch
from torch import nn


class AdaptedModel(nn.Module):
    """What every method trains: a backbone (`self.model`) with the method applied, and what the method added
    around it. Trainable parameters are grouped by learning rate: the backbone's at `backbone_lr` (a pretrained
    backbone that trains wants a small one, as P-tuning's), a head's at `head_lr`, the rest at the run's rate."""

    backbone_lr: float | None = None
    head_lr: float | None = None
    # What the method decided while building, from the model in hand (BitFit's auto choice of parameters): the
    # recipes say it and log it with the resolved config.
    decisions: dict = {}

    def _head_parameters(self) -> set[int]:
        return set()

    def param_groups(self, lr: float) -> list[dict]:
        """Trainable parameters grouped by learning rate: the head at `head_lr`, the backbone at `backbone_lr`,
        everything else (soft prompts, adapters outside the backbone) at `lr`; an unset rate is `lr`."""
        backbone = {id(p) for p in self.model.parameters()}
        head = self._head_parameters()
        groups: dict[float, list[nn.Parameter]] = {}
        for p in self.trainable_parameters():
            rate = self.head_lr if id(p) in head else self.backbone_lr if id(p) in backbone else None
            groups.setdefault(lr if rate is None else rate, []).append(p)
        return [{"params": params, "lr": rate} for rate, params in groups.items()]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def count_parameters(self) -> tuple[int, int]:
        """(trainable, total), each shared tensor counted once."""
        seen: dict[int, nn.Parameter] = {id(p): p for p in self.parameters()}
        total = sum(p.numel() for p in seen.values())
        trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
        return trainable, total


class PromptClassifier(AdaptedModel):
    """`forward(batch) -> [batch, classes]` scores.

    `input_transform`, when a method has one, maps (input embeddings, batch) to (embeddings, attention
    mask, read-out positions): soft prompts are inserted there, before the backbone runs.
    """

    def __init__(self, model: nn.Module, head: nn.Module, input_transform: nn.Module | None = None,
                 backbone_lr: float | None = None, head_lr: float | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.input_transform = input_transform
        # Separate rates where the parts want different ones: a pretrained backbone that trains wants a small
        # one (P-tuning with a tuned backbone), a randomly initialised head a large one (full fine-tuning).
        self.backbone_lr = backbone_lr
        self.head_lr = head_lr
        self.register_buffer("class_offset", torch.zeros(0), persistent=False)  # calibration, when set

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        readout, mask = batch["readout"], batch["attention_mask"]
        if self.input_transform is None:
            inputs = {"input_ids": batch["input_ids"], "attention_mask": mask}
        else:
            embeds = self.model.get_input_embeddings()(batch["input_ids"])
            embeds, mask, readout = self.input_transform(embeds, batch)
            inputs = {"inputs_embeds": embeds, "attention_mask": mask}
        scores = self.head(self.model, readout, **inputs)
        if self.class_offset.numel():
            scores = scores.log_softmax(-1) - self.class_offset
        return scores

    def _head_parameters(self) -> set[int]:
        return {id(p) for p in self.head.parameters()}
