"""Load a backbone and say what kind it is; the kind decides how a prompt is read out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.models.aliases import ALIASES, identity_of, pull


class ModelKind(str, enum.Enum):
    MASKED = "masked"  # label word at the [MASK] position
    CAUSAL = "causal"  # label word as the next token after the template
    ENCODER = "encoder"  # no LM head: classification heads only


@dataclass
class Backbone:
    model: torch.nn.Module
    tokenizer: object
    kind: ModelKind
    name: str
    identity: dict = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def max_length(self) -> int:
        cfg = self.model.config
        limit = getattr(cfg, "max_position_embeddings", None) or 512
        return int(min(limit, 4096))

    @classmethod
    def from_model(cls, model: torch.nn.Module, tokenizer, name: str = "in-memory") -> Backbone:
        _prepare_tokenizer(tokenizer)
        return cls(model=model, tokenizer=tokenizer, kind=detect_kind(model), name=name, identity={"name": name})


def detect_kind(model: torch.nn.Module) -> ModelKind:
    cls = type(model).__name__
    if cls.endswith("ForMaskedLM"):
        return ModelKind.MASKED
    if cls.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
        return ModelKind.CAUSAL
    return ModelKind.ENCODER


def _kind_from_config(config) -> ModelKind:
    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith("ForMaskedLM") or arch.endswith("ForPreTraining"):
            return ModelKind.MASKED
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return ModelKind.CAUSAL
        if arch.endswith("Model"):  # a bare body, e.g. a sentence encoder: no LM head was trained
            return ModelKind.ENCODER
    if getattr(config, "is_decoder", False) or config.model_type in {"llama", "gemma3_text", "gemma3", "gpt2", "qwen2"}:
        return ModelKind.CAUSAL
    if config.model_type in {"bert", "roberta", "deberta-v2", "electra", "albert", "distilbert", "xlm-roberta"}:
        return ModelKind.MASKED
    return ModelKind.ENCODER


def _prepare_tokenizer(tokenizer) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # We gather read-out positions explicitly, so right padding works for every kind.
    tokenizer.padding_side = "right"


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a loadable location, before any weights are read."""

    name: str
    path: str
    kind: ModelKind
    identity: dict


def resolve_model(name: str, kind: str | None = None) -> ModelRef:
    """`name` is an offline alias, a local folder, or a Hugging Face model id (loaded from the hub)."""
    from transformers import AutoConfig

    path = str(pull(name)) if name in ALIASES else name
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise WorkbenchError(
            f"cannot load model {name!r}: {str(e).splitlines()[0]}. Use an alias ({', '.join(sorted(ALIASES))}), "
            f"a local folder, or a Hugging Face model id while online."
        ) from None
    if kind is None and name in ALIASES:
        kind = ALIASES[name].kind
    identity = identity_of(Path(path)) if Path(path).exists() else None
    identity = identity or {"name": name, "revision": getattr(config, "_commit_hash", None)}
    return ModelRef(name, path, ModelKind(kind) if kind else _kind_from_config(config), identity)


def load_tokenizer(ref: ModelRef):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    _prepare_tokenizer(tokenizer)
    return tokenizer


def load_backbone(name: str | ModelRef, *, kind: str | None = None, tokenizer=None,
                  dtype: torch.dtype = torch.float32) -> Backbone:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    ref = name if isinstance(name, ModelRef) else resolve_model(name, kind)
    auto = {ModelKind.MASKED: AutoModelForMaskedLM, ModelKind.CAUSAL: AutoModelForCausalLM}.get(ref.kind, AutoModel)
    model = auto.from_pretrained(ref.path, dtype=dtype)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ref)
    return Backbone(model=model, tokenizer=tokenizer, kind=ref.kind, name=ref.name, identity=ref.identity)
