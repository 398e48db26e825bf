"""Heads that turn a backbone's hidden states into class scores.

The verbalizer head never builds [batch, seq, vocab] logits. While it runs, the model's output
embedding multiplies by the label words' rows only, so the model's own head code (BERT's transform,
Gemma's soft-capping, tied weights) still applies, at the cost of [batch, seq, label tokens].
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def label_word_logits(model: nn.Module, token_ids: torch.Tensor):
    """Within the block, the model's output layer returns scores for `token_ids` only."""
    decoder = model.get_output_embeddings()
    if decoder is None or not hasattr(decoder, "weight"):
        raise ValueError(f"{type(model).__name__} has no output embedding to read label words from")

    def restricted(hidden: torch.Tensor) -> torch.Tensor:
        bias = decoder.bias[token_ids] if getattr(decoder, "bias", None) is not None else None
        return F.linear(hidden, decoder.weight[token_ids], bias)

    decoder.forward = restricted  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del decoder.forward


def gather_rows(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]


class VerbalizerHead(nn.Module):
    """Label-word scores at the read-out position, combined into class scores by a fixed matrix."""

    def __init__(self, token_ids: list[int], class_matrix: torch.Tensor, full_vocab: bool = False):
        super().__init__()
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)
        self.register_buffer("class_matrix", class_matrix.clone(), persistent=False)
        self.full_vocab = full_vocab  # the slow reference path, kept for tests and benchmarks

    def forward(self, model: nn.Module, readout: torch.Tensor, **inputs) -> torch.Tensor:
        if self.full_vocab:
            logits = model(**inputs).logits
            token_scores = gather_rows(logits, readout)[:, self.token_ids]
        else:
            with label_word_logits(model, self.token_ids):
                token_scores = gather_rows(model(**inputs).logits, readout)
        return token_scores.float() @ self.class_matrix.T


class LinearHead(nn.Module):
    """A classification head on the body's hidden states: the one at the read-out position ([CLS] or the last
    token), or the mean over the input's tokens."""

    POOLING = ("readout", "mean")

    def __init__(self, hidden_size: int, num_classes: int, dropout: float = 0.1, pooling: str = "readout"):
        super().__init__()
        if pooling not in self.POOLING:
            raise ValueError(f"pooling {pooling!r}: expected one of {self.POOLING}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, num_classes)

    def features(self, model: nn.Module, readout: torch.Tensor, **inputs) -> torch.Tensor:
        hidden = last_hidden_state(model, **inputs)
        if self.pooling == "mean":
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return gather_rows(hidden, readout)

    def forward(self, model: nn.Module, readout: torch.Tensor, **inputs) -> torch.Tensor:
        return self.proj(self.dropout(self.features(model, readout, **inputs))).float()


def last_hidden_state(model: nn.Module, **inputs) -> torch.Tensor:
    """The body's final hidden states, through the full model so wrappers (PEFT prefixes) still apply,
    with the LM head reduced to zero columns so no vocabulary logits are computed."""
    if model.get_output_embeddings() is None:  # a bare encoder
        return model(**inputs).last_hidden_state
    with label_word_logits(model, torch.zeros(0, dtype=torch.long, device=inputs["attention_mask"].device)):
        return model(**inputs, output_hidden_states=True).hidden_states[-1]
