"""Load a backbone and say what kind it is; the kind decides how a prompt is read out."""

from __future__ import annotations

import difflib
import enum
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.models.aliases import ALIASES, identity_of, pull, verify_folder


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


HF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9_.-]{1,96})?")


def _hub_check(name: str) -> tuple[str | None, str | None]:
    """For a name that is neither an alias nor an existing folder: (why it cannot be a Hugging Face id, or None;
    why the hub cannot be reached, or None: only the local Hugging Face cache is read then)."""
    aliases = ", ".join(sorted(ALIASES))
    if name.startswith(("/", "./", "../", "~", ".\\")) or name in (".", ".."):
        return f"folder {name} does not exist", None
    if not HF_ID.fullmatch(name) or ".." in name or name.endswith("."):
        return f"not an alias ({aliases}), a local folder or a Hugging Face model id (org/name)", None
    if "/" not in name:
        close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.75)
        if close:
            return f"unknown model alias; did you mean {close[0]!r}? Aliases are {aliases}", None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return None, "HF_HUB_OFFLINE is set"
    from workbench.tracking.uris import reach

    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    scheme, host = endpoint.scheme or "https", endpoint.hostname or ""
    if scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return None, None  # a proxy would carry the request: let the hub client try
    why = reach(scheme, host, endpoint.port)
    return None, (f"the Hugging Face hub cannot be reached ({why})" if why else None)


def resolve_model(name: str, kind: str | None = None) -> ModelRef:
    """`name` is an offline alias, a local folder, or a Hugging Face model id (loaded from the hub).

    An alias is pulled and checked (`pull`); a folder the workbench converted has its files checked against the
    sha256 recorded at conversion; a name that cannot be a hub id, and a hub id while the hub cannot be reached
    and the model is not in the local Hugging Face cache, are refused at once in one line."""
    from transformers import AutoConfig

    if not isinstance(name, str) or not name.strip():
        raise WorkbenchError(f"model {name!r}: expected an alias ({', '.join(sorted(ALIASES))}), a local folder "
                             f"or a Hugging Face model id")
    offline = None
    if name in ALIASES:
        path = str(pull(name))
    else:
        path = name
        local = Path(os.path.expanduser(name))
        if local.exists():
            if not local.is_dir():
                raise WorkbenchError(f"cannot load model {name!r}: {local} is a file; expected a model folder "
                                     f"(config.json, weights, tokenizer)")
            path = str(local)
            verify_folder(local)  # a folder converted by the workbench: its files must still hash right
        else:
            problem, offline = _hub_check(name)
            if problem:
                raise WorkbenchError(f"cannot load model {name!r}: {problem}")
    try:
        config = AutoConfig.from_pretrained(path, **({"local_files_only": True} if offline else {}))
    except (OSError, ValueError) as e:
        if offline:
            raise WorkbenchError(
                f"cannot load model {name!r}: not an alias ({', '.join(sorted(ALIASES))}) or a local folder, "
                f"{offline}, and it is not in the local Hugging Face cache") from None
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
