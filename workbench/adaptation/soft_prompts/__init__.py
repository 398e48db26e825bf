"""Soft prompts written here, because they sit inside our templates:

- prompt tuning (Lester et al. 2021): n trainable vectors prepended to the input, backbone frozen;
- P-tuning (Liu et al. 2021): trainable tokens at the template's {"soft"} slots, produced by a prompt
  encoder (bidirectional LSTM + MLP, MLP only, or none), backbone frozen or tuned.

Both can start from a pre-trained prompt (PPT, `init=ppt:DIR_OR_RUN_ID`, written by `workbench ppt pretrain`).
Prompt tuning then reads the task in the format the prompt was pre-trained on (`cast`).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.head_choice import HEAD_HELP, HEADS, make_head
from workbench.adaptation.registry import BuildContext, Method, RewriteContext, freeze, register_method
from workbench.config import Categorical, Float, Int, MethodOptions, SearchSpace, option
from workbench.config.fields import LR_MAX
from workbench.errors import ConfigError
from workbench.ppt.artifact import PREFIX as PPT, check_fits, resolve_prompt
from workbench.prompts.template import Segment, Template
from workbench.prompts.verbalizer import Verbalizer

INITS = ("random", "vocab", "labels")


def check_init(value: str, allowed: tuple[str, ...]) -> None:
    if value in allowed or value.startswith(PPT) and len(value) > len(PPT):
        return
    raise ConfigError(f"method.init: {value!r} is not allowed; expected one of {', '.join(map(repr, allowed))} or "
                      f"'ppt:DIR_OR_RUN_ID' (a prompt from `workbench ppt pretrain`)", field="method.init")


@dataclass
class PromptTuningOptions(MethodOptions):
    num_virtual_tokens: int = option(20, min=1, max=1024, help="trainable vectors prepended to every input")
    init: str = option("vocab", help="random: uniform(-0.5, 0.5); vocab: embeddings of common tokens; labels: the "
                                     "label words' embeddings first, then common tokens; ppt:DIR_OR_RUN_ID: a prompt "
                                     "pre-trained by `workbench ppt pretrain` for this model")
    cast: bool = option(True, help="with init=ppt:...: read the task in the prompt's pre-training format (its "
                                   "template; for the pair and multiple-choice formats, its answer words)")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)

    def check(self) -> None:
        check_init(self.init, INITS)
        if self.init.startswith(PPT) and self.head != "verbalizer":
            raise ConfigError("method.head: a pre-trained prompt was trained to make the model say the answer word; "
                              "use head=verbalizer with init=ppt:...", field="method.head")


def cast_to_pretrained(ctx: RewriteContext, template: Template, verbalizer: Verbalizer
                       ) -> tuple[Template, Verbalizer]:
    """Prompt tuning from a pre-trained prompt: check that the prompt fits this model and length (before any
    weights load), then cast the task into the prompt's format."""
    from workbench.ppt.formats import cast_prompt, get_format

    opts = ctx.options
    if not opts.init.startswith(PPT) or ctx.restoring:  # a restored run's template and words are already cast
        return template, verbalizer
    artifact = resolve_prompt(opts.init, ctx.tracking_uri)
    check_fits(artifact, ctx.model.name, ctx.model.identity, opts.num_virtual_tokens, f"method.init {opts.init!r}")
    if not opts.cast:
        return template, verbalizer
    return cast_prompt(get_format(artifact.format), len(ctx.task.text_fields), verbalizer, ctx.task.name)


def build_prompt_tuning(ctx: BuildContext, opts: PromptTuningOptions):
    from workbench.adaptation.soft_prompts.modules import PrependedPrompt, init_prompt
    from workbench.prompts.encoding import special_affixes
    from workbench.training.classifier import PromptClassifier

    freeze(ctx.backbone.model)
    head = make_head(ctx, opts.head)
    insert_at = len(special_affixes(ctx.backbone.tokenizer)[0])
    if opts.init.startswith(PPT) and not ctx.restoring:
        init = resolve_prompt(opts.init, ctx.tracking_uri).tensor()
    else:  # a restored run's saved prompt replaces whatever starts here
        init = init_prompt(ctx, opts.num_virtual_tokens, "random" if opts.init.startswith(PPT) else opts.init,
                           ctx.seed)
    transform = PrependedPrompt(init, insert_at)
    return PromptClassifier(ctx.backbone.model, head, transform)


@dataclass
class PTuningOptions(MethodOptions):
    prompt_encoder: str = option("lstm", choices=("lstm", "mlp", "none"),
                                 help="what produces the soft tokens: BiLSTM + MLP, MLP, or free embeddings")
    num_soft: int = option(4, min=1, max=1024, help="soft tokens inserted before the mask when the template has no "
                                          "{\"soft\"} slots")
    tune_backbone: bool = option(False, help="train the backbone too, at backbone_lr")
    backbone_lr: float = option(1e-5, above=0, max=LR_MAX,
                                help="the backbone's learning rate when tune_backbone is set "
                                     "(P-tuning trains the LM at a fixed small rate)")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)
    init: str = option("vocab", help="vocab: embeddings of common tokens ({\"soft\": \"word\"} slots start from "
                                     "their word); ppt:DIR_OR_RUN_ID: a pre-trained prompt, one vector per slot in "
                                     "order (needs prompt_encoder=none and as many slots as the prompt has tokens)")

    def check(self) -> None:
        check_init(self.init, ("vocab",))
        if self.init.startswith(PPT) and self.prompt_encoder != "none":
            raise ConfigError(f"method.prompt_encoder: {self.prompt_encoder!r} would transform the pre-trained "
                              f"vectors into others; use prompt_encoder=none with init=ppt:...",
                              field="method.prompt_encoder")


def add_soft_slots(template: Template, opts: PTuningOptions) -> Template:
    """With no {"soft"} slots in the template, put `num_soft` of them just before the mask."""
    if template.num_soft or not template.has_mask:
        return template
    segs = list(template.segments)
    at = next(i for i, s in enumerate(segs) if s.kind == "mask")
    segs[at:at] = [Segment("soft")] * opts.num_soft
    return Template(tuple(segs), template.source + f" (+{opts.num_soft} soft before mask)", template.text)


def p_tuning_prompt(ctx: RewriteContext, template: Template, verbalizer: Verbalizer) -> tuple[Template, Verbalizer]:
    """Soft slots added where the template has none; a pre-trained prompt checked against the model and the slots."""
    own_slots = template.num_soft
    template = add_soft_slots(template, ctx.options)
    if ctx.options.init.startswith(PPT) and not ctx.restoring:
        artifact = resolve_prompt(ctx.options.init, ctx.tracking_uri)
        if own_slots and own_slots != artifact.tokens:
            raise ConfigError(f"{template.source}: the template has {own_slots} {{\"soft\"}} slots but the prompt in "
                              f"{artifact.folder} has {artifact.tokens} vectors; P-tuning from a pre-trained prompt "
                              f"needs one slot per vector", field="prompt.template")
        check_fits(artifact, ctx.model.name, ctx.model.identity, template.num_soft,
                   f"method.init {ctx.options.init!r}", tokens_field="method.num_soft")
    return template, verbalizer


def build_p_tuning(ctx: BuildContext, opts: PTuningOptions):
    from workbench.adaptation.soft_prompts.modules import SlotPromptEncoder, init_prompt
    from workbench.prompts.verbalizer import space_sensitive
    from workbench.training.classifier import PromptClassifier

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
    if opts.init.startswith(PPT) and not ctx.restoring:  # slot i starts from the pre-trained vector i (checked)
        return PromptClassifier(ctx.backbone.model, head,
                                SlotPromptEncoder(resolve_prompt(opts.init, ctx.tracking_uri).tensor(), "none"),
                                backbone_lr=opts.backbone_lr if opts.tune_backbone else None)
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
    options=PromptTuningOptions, build=build_prompt_tuning, default_lr=3e-2, rewrite_prompt=cast_to_pretrained,
    extra_tokens=lambda o: o.num_virtual_tokens, generates=True,
    space=SearchSpace({"train.lr": Float(1e-3, 3e-1, log=True),
                       "method.num_virtual_tokens": Categorical([5, 10, 20, 50]),
                       "method.init": Categorical(["vocab", "labels", "random"]),
                       "train.warmup_ratio": Float(0.0, 0.2)}),
))

register_method(Method(
    name="p-tuning", summary="soft tokens inside the template from an LSTM/MLP prompt encoder (Liu et al.)",
    options=PTuningOptions, build=build_p_tuning, default_lr=1e-3, rewrite_prompt=p_tuning_prompt,
    trains_soft_slots=True,
    space=SearchSpace({"train.lr": Float(1e-4, 3e-2, log=True),
                       "method.prompt_encoder": Categorical(["lstm", "mlp", "none"]),
                       "method.num_soft": Int(2, 16, step=2), "train.warmup_ratio": Float(0.0, 0.2),
                       "train.batch_size": Categorical([4, 8])}),
))
