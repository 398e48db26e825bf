"""A causal LM with a method applied, as instruction tuning trains, scores and runs it.

Three uses, one path through the method: the training loss (next-token cross-entropy on the response tokens
only), rank classification (the total log-likelihood of each answer option), and generation. Whatever the method
adds runs in all three: prompt tuning's vectors are inserted before the backbone for the loss and for every
generated token; prefix tuning's keys and values (PEFT's `get_prompt`) open the cache that generation starts from;
LoRA and full fine-tuning change the weights themselves. Generation is our own greedy loop, checked against the
logits path at its first step, so no library hook can quietly leave the method out.

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
        model = cls(built.model, built.input_transform, built.backbone_lr)
        model.decisions = built.decisions
        return model

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

    def _decoder(self, batch_size: int) -> tuple[nn.Module, object, int]:
        """(the module that runs the tokens, the cache generation starts from, its length).

        Prefix tuning and P-tuning v2 put their keys and values in that cache: the same `get_prompt` the training
        forward reads, handed to the base model by us rather than through PEFT's generation hooks (a library
        update once disconnected those and generation went on silently without the prefix). Every other method
        starts from an empty cache and runs through `self.model` (LoRA's layers sit inside it)."""
        from workbench.models.backbone import new_cache

        config = getattr(self.model, "active_peft_config", None)
        if config is None or not config.is_prompt_learning:
            return self.model, new_cache(self.model), 0
        if config.peft_type != "PREFIX_TUNING":
            raise ValueError(f"generation through PEFT's {config.peft_type} is not supported: only prefix tuning")
        prefix = self.model.get_prompt(batch_size, max_cache_len=-1)
        return self.model.get_base_model(), prefix, config.num_virtual_tokens

    def _prompt_inputs(self, prompts: list[list[int]], pad_id: int, device) -> tuple[dict, torch.Tensor]:
        """The prompts left-padded into one batch, as token ids or, with an input transform (prompt tuning), as
        embeddings with the method's vectors in place (each row built alone, so the vectors sit where training
        put them whatever the padding); and the attention mask."""
        if self.input_transform is None:
            width = max(map(len, prompts))
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
            return {"input_ids": ids}, mask
        rows = []
        for p in prompts:
            ids = torch.tensor([p], device=device)
            inputs, _ = self._inputs({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
            rows.append(inputs["inputs_embeds"][0])
        width = max(r.shape[0] for r in rows)
        embeds = torch.stack([torch.cat([r.new_zeros(width - r.shape[0], r.shape[1]), r]) for r in rows])
        mask = torch.tensor([[0] * (width - r.shape[0]) + [1] * r.shape[0] for r in rows], device=device)
        return {"inputs_embeds": embeds}, mask

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, eos_ids: list[int], pad_id: int
                 ) -> list[list[int]]:
        """Greedy continuations of token-id prompts (left-padded in one batch), without the end-of-text token.

        The loop is ours, not `model.generate`: whatever the method adds (prompt tuning's vectors in the prompt's
        embeddings, a prefix's keys and values in the starting cache) is put in place explicitly, the cache then
        carries it to every new token, and the first step is checked against the logits path, so a method that
        stopped reaching generation is refused instead of silently answering as the base model."""
        was_training = self.training
        self.eval()
        try:
            return self._greedy(prompts, max_new_tokens, set(eos_ids), pad_id)
        finally:
            self.train(was_training)

    def _greedy(self, prompts: list[list[int]], max_new_tokens: int, eos: set[int], pad_id: int) -> list[list[int]]:
        from workbench.models.backbone import cache_keyword, sliding_window

        body, past, start = self._decoder(len(prompts))
        inputs, mask = self._prompt_inputs(prompts, pad_id, next(self.model.parameters()).device)
        window = sliding_window(self.model)
        if window and len(set(map(len, prompts))) > 1 and start + mask.shape[1] + max_new_tokens > window:
            # padding would sit inside a sliding window: prompts of one length at a time need none
            by_length: dict[int, list[int]] = {}
            for i, p in enumerate(prompts):
                by_length.setdefault(len(p), []).append(i)
            result: list[list[int]] = [[] for _ in prompts]
            for rows in by_length.values():
                for i, tokens in zip(rows, self._greedy([prompts[i] for i in rows], max_new_tokens, eos, pad_id)):
                    result[i] = tokens
            return result
        # the prefix occupies positions 0..start-1 of every row, as in the training forward
        mask = torch.cat([mask.new_ones(mask.shape[0], start), mask], dim=1)
        position = (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]
        cache = {cache_keyword(body): past}  # filled in place by every forward below
        out = body(**inputs, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1, **cache)
        self._check_first_step(prompts[0], out.logits[0, -1])
        tokens: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        position = position[:, -1:]
        for step in range(max_new_tokens):
            chosen = out.logits[:, -1].float().argmax(-1)
            for row, t in enumerate(chosen.tolist()):
                if not done[row]:
                    done[row] = t in eos
                    if not done[row]:
                        tokens[row].append(t)
            if all(done) or step + 1 == max_new_tokens:
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            position = position + 1
            out = body(input_ids=chosen[:, None], attention_mask=mask, position_ids=position, use_cache=True,
                       logits_to_keep=1, **cache)
        return tokens

    def _check_first_step(self, prompt: list[int], generated: torch.Tensor) -> None:
        """The first token's logits of the generation path equal the logits path's for the same prompt (which is
        the training forward): anything the method adds that generation lost shows here."""
        ids = torch.tensor([prompt], device=generated.device)
        reference = self.logits(ids, torch.ones_like(ids))[0, -1].float()
        generated = generated.float()
        exact = all(p.dtype == torch.float32 for p in self.model.parameters()) and not torch.is_autocast_enabled()
        tolerance = (1e-3 if exact else 5e-2) * max(1.0, reference.abs().max().item())
        gap = (generated - reference).abs().max().item()
        if gap > tolerance:
            raise RuntimeError(f"generation does not go through the method ({type(self.model).__name__}): its "
                               f"first-token logits differ from the model's forward by {gap:.3g}; refusing to "
                               "generate without what the method adds")
