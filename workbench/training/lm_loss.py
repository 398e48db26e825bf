"""The language-model loss on unlabelled text: PET's auxiliary loss, which keeps a model that is fine-tuned on a
few labelled examples close to language modelling (catastrophic forgetting is the reason PET gives).

Masked LMs: BERT's recipe, 15% of the real tokens chosen, 80% of those replaced by the mask token, 10% by a random
token, 10% kept, and the loss read at the chosen positions. Causal LMs: next-token loss over the real tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from workbench.models.backbone import ModelKind
from workbench.prompts.encoding import EncodedExample, collate

MASK_PROBABILITY = 0.15
IGNORE = -100  # the label value Hugging Face losses skip


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) for a masked-LM loss: labels hold the original ids at the chosen positions, IGNORE
    elsewhere. At least one position per row is chosen, so no row is without a loss."""
    chance = torch.rand(input_ids.shape, generator=generator)
    chosen = (chance < MASK_PROBABILITY) & maskable
    first = maskable.float().argmax(-1)  # a row with nothing chosen gets its first maskable position
    none = ~chosen.any(-1) & maskable.any(-1)
    chosen[none, first[none]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    roll = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels


def language_model_loss(model: torch.nn.Module, kind: ModelKind, batch: dict[str, torch.Tensor], tokenizer,
                        generator: torch.Generator) -> torch.Tensor:
    """The model's own LM loss on a collated batch of unlabelled inputs."""
    ids, attention = batch["input_ids"], batch["attention_mask"]
    if ModelKind(kind) == ModelKind.MASKED:
        special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=ids.dtype)
        maskable = attention.bool() & ~torch.isin(ids, special)
        inputs, labels = mask_tokens(ids, maskable, tokenizer.mask_token_id, len(tokenizer), generator)
    else:
        inputs, labels = ids, ids.masked_fill(~attention.bool(), IGNORE)
    device = next(model.parameters()).device
    out = model(input_ids=inputs.to(device), attention_mask=attention.to(device), labels=labels.to(device))
    return out.loss


def unlabeled_lm_loss(model: torch.nn.Module, kind: ModelKind, pool: list[EncodedExample], tokenizer,
                      batch_size: int, seed: int) -> Callable[[], torch.Tensor]:
    """A function that draws the next random batch of `pool` (with the seed) and returns its LM loss: the trainer's
    `aux_loss`."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def loss() -> torch.Tensor:
        batch = collate(rng.sample(pool, min(batch_size, len(pool))), pad)
        return language_model_loss(model, kind, batch, tokenizer, generator)

    return loss
