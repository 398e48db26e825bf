"""A causal LM with a method applied, as instruction tuning trains, scores and runs it.

Three uses, one path through the method: the training loss (next-token cross-entropy on the response tokens
only), rank classification (the total log-likelihood of each answer option), and generation. Whatever the method
adds runs in all three: prompt tuning's vectors are inserted before the backbone for the loss and for every
generated token; prefix tuning's keys and values come from PEFT's model; LoRA and full fine-tuning change the
weights themselves.

The output layer is never applied to the whole batch: the hidden states that enter it are caught, and the loss
multiplies only the positions that carry a label, in chunks (`linear_ce`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from workbench.training.classifier import AdaptedModel
from workbench.training.linear_ce import IGNORE, linear_cross_entropy, token_logprobs


@dataclass
class EncodedLM:
    """One tokenized example: the prompt's tokens, then the response's (with the end-of-text token)."""

    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt's tokens, the token itself on the response's
    guid: str = ""

    @property
    def response_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def collate_lm(batch: list[EncodedLM], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded ids, the attention mask, and labels with IGNORE on the padding; as wide as the longest example
    rounded up to `multiple`."""
    from workbench.prompts.encoding import padded_width

    width = padded_width(max(len(e.input_ids) for e in batch), multiple)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@contextlib.contextmanager
def output_layer_inputs(model: nn.Module):
    """Within the block the model's output layer computes nothing (zero columns) and the hidden states that
    enter it are appended to the list yielded: the final norm is applied, the vocabulary product is not."""
    decoder = model.get_output_embeddings()
    if decoder is None or not hasattr(decoder, "weight"):
        raise ValueError(f"{type(model).__name__} has no output layer: a language-model loss needs a causal LM")
    caught: list[torch.Tensor] = []

    def catch(hidden: torch.Tensor) -> torch.Tensor:
        caught.append(hidden)
        return hidden.new_empty(*hidden.shape[:-1], 0)

    decoder.forward = catch  # an instance attribute shadows the class's forward
    try:
        yield caught
    finally:
        del decoder.forward


def _softcap(model: nn.Module) -> float | None:
    """Gemma 2's final logit soft-capping (None for models without it), which the loss must apply as the model
    would."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    return getattr(config, "final_logit_softcapping", None) or None


class InstructionModel(AdaptedModel):
    """`forward(batch) -> loss`: mean next-token cross-entropy over the response tokens of a `collate_lm` batch."""

    def __init__(self, model: nn.Module, input_transform: nn.Module | None = None,
                 backbone_lr: float | None = None, chunk: int | None = None):
        super().__init__()
        self.model = model
        self.input_transform = input_transform
        self.backbone_lr = backbone_lr
        self.chunk = chunk  # rows of logits at a time; None: `linear_ce.chunk_rows(vocabulary)`

    @classmethod
    def from_built(cls, built: nn.Module) -> InstructionModel:
        """From what a method's build returned for the language-model objective (a PromptClassifier with no head)."""
        return cls(built.model, built.input_transform, built.backbone_lr)

    def _inputs(self, batch: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor | None]:
        """The model's inputs, with what the method adds before the backbone; labels aligned with them."""
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch.get("labels")
        if self.input_transform is None:
            return {"input_ids": ids, "attention_mask": mask}, labels
        embeds = self.model.get_input_embeddings()(ids)
        embeds, mask, _ = self.input_transform(embeds, {**batch, "readout": torch.zeros_like(ids[:, 0])})
        if labels is not None and embeds.shape[1] != ids.shape[1]:
            labels = self.input_transform.widen(labels, IGNORE)
        return {"inputs_embeds": embeds, "attention_mask": mask}, labels

    def _labelled_hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hidden states that predict a labelled token [N, H], those tokens [N], the row of each [N])."""
        inputs, labels = self._inputs(batch)
        with output_layer_inputs(self.model) as caught:
            self.model(**inputs, use_cache=False)
        hidden = caught[-1]
        # position t predicts token t + 1
        targets = labels[:, 1:]
        keep = targets != IGNORE
        rows = torch.arange(targets.shape[0], device=targets.device)[:, None].expand_as(targets)[keep]
        return hidden[:, :-1][keep], targets[keep], rows

    def _output_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        decoder = self.model.get_output_embeddings()
        return decoder.weight, getattr(decoder, "bias", None)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from workbench.training.kernels import fused_linear_cross_entropy

        # The hidden states come from the model's own forward, with the method's inputs: a fused loss that took the
        # token ids and ran the model itself would silently leave a soft prompt out.
        hidden, targets, _ = self._labelled_hidden(batch)
        weight, bias = self._output_layer()
        softcap = _softcap(self.model)
        fused = fused_linear_cross_entropy(hidden, weight, targets, bias, softcap)  # Liger on CUDA, when installed
        return fused if fused is not None else linear_cross_entropy(hidden, weight, targets, bias, softcap, self.chunk)

    @torch.no_grad()
    def sequence_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B]: each row's total log-likelihood of its labelled tokens (rank classification scores an answer
        option by it)."""
        hidden, targets, rows = self._labelled_hidden(batch)
        weight, bias = self._output_layer()
        per_token = token_logprobs(hidden, weight, targets, bias, _softcap(self.model), self.chunk)
        return torch.zeros(batch["input_ids"].shape[0], device=per_token.device).index_add_(0, rows, per_token)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits of every position, through the method (the reference path: tests compare
        generation with it)."""
        inputs, _ = self._inputs({"input_ids": input_ids, "attention_mask": attention_mask})
        return self.model(**inputs, use_cache=False).logits

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, eos_ids: list[int], pad_id: int
                 ) -> list[list[int]]:
        """Greedy continuations of token-id prompts (left-padded in one batch), without the end-of-text token.

        With an input transform (prompt tuning) the prompt goes in as embeddings with the method's vectors in
        place, each row built alone so the vectors sit where training put them whatever the padding; the cache
        then holds their keys and values for every token generated after (generation given only token ids would
        silently drop them)."""
        device = next(self.model.parameters()).device
        was_training = self.training
        self.eval()
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(eos_ids),
                      pad_token_id=pad_id)
        if self.input_transform is None:
            width = max(map(len, prompts))
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, width:]
        else:
            rows = []
            for p in prompts:
                ids = torch.tensor([p], device=device)
                inputs, _ = self._inputs({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
                rows.append(inputs["inputs_embeds"][0])
            width = max(r.shape[0] for r in rows)
            embeds = torch.stack([torch.cat([r.new_zeros(width - r.shape[0], r.shape[1]), r]) for r in rows])
            mask = torch.tensor([[0] * (width - r.shape[0]) + [1] * r.shape[0] for r in rows], device=device)
            out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        self.train(was_training)
        result = []
        for row in out.tolist():
            tokens = []
            for t in row:
                if t in eos_ids:
                    break
                tokens.append(t)
            result.append(tokens)
        return result
