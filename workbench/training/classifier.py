"""A backbone, an optional input transform (soft prompts), and a head: the thing every method trains."""

from __future__ import annotations

import torch
from torch import nn


class PromptClassifier(nn.Module):
    """`forward(batch) -> [batch, classes]` scores.

    `input_transform`, when a method has one, maps (input embeddings, batch) to (embeddings, attention
    mask, read-out positions): soft prompts are inserted there, before the backbone runs.
    """

    def __init__(self, model: nn.Module, head: nn.Module, input_transform: nn.Module | None = None,
                 backbone_lr: float | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.input_transform = input_transform
        self.backbone_lr = backbone_lr  # a separate, usually smaller, rate for backbone weights that train
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

    def param_groups(self, lr: float) -> list[dict] | None:
        """Optimizer groups when the backbone trains at its own rate (P-tuning with a tuned backbone)."""
        if self.backbone_lr is None:
            return None
        backbone = {id(p) for p in self.model.parameters()}
        own = [p for p in self.trainable_parameters() if id(p) not in backbone]
        body = [p for p in self.trainable_parameters() if id(p) in backbone]
        return [g for g in ({"params": own, "lr": lr}, {"params": body, "lr": self.backbone_lr}) if g["params"]]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def count_parameters(self) -> tuple[int, int]:
        """(trainable, total), each shared tensor counted once."""
        seen: dict[int, nn.Parameter] = {id(p): p for p in self.parameters()}
        total = sum(p.numel() for p in seen.values())
        trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
        return trainable, total
