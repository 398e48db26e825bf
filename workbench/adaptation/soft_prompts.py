"""Soft prompts written here, because they sit inside our templates:

- prompt tuning (Lester et al. 2021): n trainable vectors prepended to the input, backbone frozen;
- P-tuning (Liu et al. 2021): trainable tokens at the template's {"soft"} slots, produced by a prompt
  encoder (bidirectional LSTM + MLP, MLP only, or none), backbone frozen or tuned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.adaptation.heads import HEAD_HELP, HEADS, make_head
from workbench.adaptation.registry import BuildContext, Method, freeze, register_method
from workbench.config import Categorical, Float, Int, MethodOptions, SearchSpace, option
from workbench.errors import ConfigError
from workbench.prompts.encoding import special_affixes
from workbench.prompts.template import Segment, Template
from workbench.prompts.verbalizer import space_sensitive
from workbench.training.classifier import PromptClassifier

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
        b, n, at = embeds.shape[0], self.prompt.shape[0], self.insert_at
        prompt = self.prompt.to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)
        embeds = torch.cat([embeds[:, :at], prompt, embeds[:, at:]], dim=1)
        mask = batch["attention_mask"]
        mask = torch.cat([mask[:, :at], mask.new_ones(b, n), mask[:, at:]], dim=1)
        return embeds, mask, batch["readout"] + n


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


@dataclass
class PromptTuningOptions(MethodOptions):
    num_virtual_tokens: int = option(20, min=1, help="trainable vectors prepended to every input")
    init: str = option("vocab", choices=("random", "vocab", "labels"),
                       help="random: uniform(-0.5, 0.5); vocab: embeddings of common tokens; labels: the label "
                            "words' embeddings first, then common tokens")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)


def build_prompt_tuning(ctx: BuildContext, opts: PromptTuningOptions) -> PromptClassifier:
    freeze(ctx.backbone.model)
    head = make_head(ctx, opts.head)
    insert_at = len(special_affixes(ctx.backbone.tokenizer)[0])
    transform = PrependedPrompt(init_prompt(ctx, opts.num_virtual_tokens, opts.init, ctx.seed), insert_at)
    return PromptClassifier(ctx.backbone.model, head, transform)


@dataclass
class PTuningOptions(MethodOptions):
    prompt_encoder: str = option("lstm", choices=("lstm", "mlp", "none"),
                                 help="what produces the soft tokens: BiLSTM + MLP, MLP, or free embeddings")
    num_soft: int = option(4, min=1, help="soft tokens inserted before the mask when the template has no "
                                          "{\"soft\"} slots")
    tune_backbone: bool = option(False, help="train the backbone too, at backbone_lr")
    backbone_lr: float = option(1e-5, above=0, help="the backbone's learning rate when tune_backbone is set "
                                                    "(P-tuning trains the LM at a fixed small rate)")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)


def add_soft_slots(template: Template, opts: PTuningOptions) -> Template:
    """With no {"soft"} slots in the template, put `num_soft` of them just before the mask."""
    if template.num_soft or not template.has_mask:
        return template
    segs = list(template.segments)
    at = next(i for i, s in enumerate(segs) if s.kind == "mask")
    segs[at:at] = [Segment("soft")] * opts.num_soft
    return Template(tuple(segs), template.source + f" (+{opts.num_soft} soft before mask)", template.text)


def build_p_tuning(ctx: BuildContext, opts: PTuningOptions) -> PromptClassifier:
    assert ctx.template is not None
    softs = [s for s in ctx.template.segments if s.kind == "soft"]
    if not softs:
        raise ConfigError(f"{ctx.template.source}: p-tuning needs {{\"soft\"}} slots in the template",
                          field="prompt.template")
    freeze(ctx.backbone.model)
    if opts.tune_backbone:
        for p in ctx.backbone.model.parameters():
            p.requires_grad_(True)
    head = make_head(ctx, opts.head)
    init = init_prompt(ctx, len(softs), "vocab", ctx.seed)
    emb = ctx.backbone.model.get_input_embeddings().weight.detach()
    tok = ctx.backbone.tokenizer
    prefix = " " if space_sensitive(tok) else ""
    for i, seg in enumerate(softs):
        if seg.value:  # {"soft": "great"}: start from the word's (first token's) embedding
            init[i] = emb[tok(prefix + seg.value, add_special_tokens=False)["input_ids"][0]].float()
    return PromptClassifier(ctx.backbone.model, head, SlotPromptEncoder(init, opts.prompt_encoder),
                            backbone_lr=opts.backbone_lr if opts.tune_backbone else None)


register_method(Method(
    name="prompt-tuning", summary="frozen backbone, n soft tokens prepended (Lester et al.)",
    options=PromptTuningOptions, build=build_prompt_tuning, default_lr=3e-2,
    extra_tokens=lambda o: o.num_virtual_tokens,
    space=SearchSpace({"train.lr": Float(1e-3, 3e-1, log=True),
                       "method.num_virtual_tokens": Categorical([5, 10, 20, 50]),
                       "method.init": Categorical(["vocab", "labels", "random"]),
                       "train.warmup_ratio": Float(0.0, 0.2)}),
))

register_method(Method(
    name="p-tuning", summary="soft tokens inside the template from an LSTM/MLP prompt encoder (Liu et al.)",
    options=PTuningOptions, build=build_p_tuning, default_lr=1e-3, rewrite_template=add_soft_slots,
    space=SearchSpace({"train.lr": Float(1e-4, 3e-2, log=True),
                       "method.prompt_encoder": Categorical(["lstm", "mlp", "none"]),
                       "method.num_soft": Int(2, 16, step=2), "train.warmup_ratio": Float(0.0, 0.2),
                       "train.batch_size": Categorical([4, 8])}),
))
