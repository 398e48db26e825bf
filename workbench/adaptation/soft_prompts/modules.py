"""The trainable pieces of soft-prompt methods (torch modules), imported when a method is built."""

from __future__ import annotations

import torch
from torch import nn

from workbench.adaptation.registry import BuildContext
from workbench.errors import ConfigError

VOCAB_SAMPLE = 5000  # Lester et al. sample initial prompts from the 5,000 most common tokens


def _special_ids(tokenizer) -> set[int]:
    return set(tokenizer.all_special_ids or [])


def common_token_ids(tokenizer, n: int = VOCAB_SAMPLE) -> torch.Tensor:
    """The first n non-special ids. BPE and SentencePiece vocabularies are built most-frequent-first,
    so low ids stand in for 'most common tokens' without a corpus count."""
    specials = _special_ids(tokenizer)
    ids = [i for i in range(min(len(tokenizer), n + len(specials))) if i not in specials]
    return torch.tensor(ids[:n])


def init_prompt(ctx: BuildContext, n: int, how: str, seed: int) -> torch.Tensor:
    emb = ctx.backbone.model.get_input_embeddings().weight.detach()
    gen = torch.Generator().manual_seed(seed)
    if how == "random":
        return torch.empty(n, emb.shape[1]).uniform_(-0.5, 0.5, generator=gen)
    pool = common_token_ids(ctx.backbone.tokenizer)
    rows = pool[torch.randint(len(pool), (n,), generator=gen)]
    if how == "labels":
        if ctx.label_words is None:
            raise ConfigError("method.init: 'labels' needs a verbalizer (label words)", field="method.init")
        label_ids = torch.tensor(ctx.label_words.token_ids)[:n]
        rows[: len(label_ids)] = label_ids
    return emb[rows].float().clone()


class PrependedPrompt(nn.Module):
    """Inserts n trainable vectors after the tokenizer's leading special tokens ([CLS], <bos>)."""

    def __init__(self, init: torch.Tensor, insert_at: int):
        super().__init__()
        self.prompt = nn.Parameter(init)
        self.insert_at = insert_at

    def forward(self, embeds: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, at = embeds.shape[0], self.insert_at
        prompt = self.prompt.to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)
        embeds = torch.cat([embeds[:, :at], prompt, embeds[:, at:]], dim=1)
        return embeds, self.widen(batch["attention_mask"], 1), batch["readout"] + self.prompt.shape[0]

    def widen(self, values: torch.Tensor, fill: int) -> torch.Tensor:
        """Per-token values [B, S] (an attention mask, language-model labels) with `fill` at the prompt's
        positions, so they line up with the output of `forward`."""
        at, n = self.insert_at, self.prompt.shape[0]
        return torch.cat([values[:, :at], values.new_full((values.shape[0], n), fill), values[:, at:]], dim=1)


class SlotPromptEncoder(nn.Module):
    """P-tuning's prompt encoder: free embeddings -> (BiLSTM) -> (MLP), written into the {"soft"} slots."""

    def __init__(self, init: torch.Tensor, encoder: str):
        super().__init__()
        n, hidden = init.shape
        self.embedding = nn.Parameter(init)
        self.encoder = encoder
        self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=2, bidirectional=True, batch_first=True) \
            if encoder == "lstm" else None
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)) \
            if encoder in ("lstm", "mlp") else None

    def prompts(self) -> torch.Tensor:
        # A few small matrices: run in fp32 whatever autocast says (not every LSTM kernel takes bf16)
        with torch.autocast(device_type=self.embedding.device.type, enabled=False):
            x = self.embedding.unsqueeze(0)
            if self.lstm is not None:
                x = self.lstm(x)[0]
            if self.mlp is not None:
                x = self.mlp(x)
        return x[0]

    def forward(self, embeds: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        slots = batch["soft_slots"]
        prompts = self.prompts().to(embeds.dtype)
        index = slots.unsqueeze(-1).expand(-1, -1, embeds.shape[-1])
        embeds = embeds.scatter(1, index, prompts.unsqueeze(0).expand(embeds.shape[0], -1, -1))
        return embeds, batch["attention_mask"], batch["readout"]


