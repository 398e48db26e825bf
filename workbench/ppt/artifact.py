"""A pre-trained prompt on disk: the prompt tensor (safetensors) and what it belongs to (`ppt.json`: the model's
identity, the format, the token count, the pre-training config).

`workbench ppt pretrain --out DIR` writes one, and logs the same folder to its MLflow run as `ppt_prompt/`.
Prompt tuning starts from it with `--option init=ppt:DIR` or `init=ppt:RUN_ID`; a prompt from another model,
or of another length, is refused before any weights load.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError

if TYPE_CHECKING:
    import torch

PREFIX = "ppt:"
ARTIFACT_DIR = "ppt_prompt"  # the artifact's path in its MLflow run
PROMPT_FILE = "prompt.safetensors"
META_FILE = "ppt.json"
RUN_ID = re.compile(r"[0-9a-f]{32}")
# What decides whether two identities are the same model, strongest first: the converted files' digest, the
# source file's digest, then the name and revision.
_IDENTITY_KEYS = ("converted_sha256", "sha256")


@dataclass(frozen=True)
class PromptArtifact:
    folder: Path
    meta: dict

    @property
    def format(self) -> str:
        return self.meta["format"]

    @property
    def tokens(self) -> int:
        return int(self.meta["prompt_tokens"])

    @property
    def model(self) -> str:
        return self.meta["model"]

    def tensor(self) -> torch.Tensor:
        """The prompt vectors, [tokens, hidden]. safetensors holds tensors only, so nothing in the file can run
        code; a file that is not the one `ppt pretrain` writes (a pickle put in its place, a cut-off copy) is
        refused in one line naming it."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.folder / PROMPT_FILE
        try:
            prompt = load_file(str(path)).get("prompt")
        except (SafetensorError, OSError) as e:
            raise ConfigError(f"{path}: not a prompt written by `workbench ppt pretrain` (not readable as "
                              f"safetensors: {str(e).splitlines()[0]}); pre-train it again", field="method.init"
                              ) from None
        if prompt is None or prompt.dim() != 2 or prompt.shape[0] != self.tokens:
            raise ConfigError(f"{path}: not a prompt written by `workbench ppt pretrain` (no 'prompt' tensor of "
                              f"{self.tokens} vectors, as {META_FILE} says); pre-train it again", field="method.init")
        return prompt.float()


def save_prompt(folder: Path, prompt: torch.Tensor, meta: dict) -> None:
    """Write both files, each through a temporary name: a stop mid-write leaves the old artifact or none."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (PROMPT_FILE + ".tmp")
    save_file({"prompt": prompt.detach().float().cpu().contiguous()}, str(tmp))
    os.replace(tmp, folder / PROMPT_FILE)
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps({**meta, "prompt_tokens": int(prompt.shape[0]), "hidden_size": int(prompt.shape[1])},
                              indent=1, default=str))
    os.replace(tmp, folder / META_FILE)


def read_prompt(folder: Path, where: str) -> PromptArtifact:
    """The artifact in `folder`; `where` names it in messages (the option and value the user gave)."""
    meta_path, prompt_path = folder / META_FILE, folder / PROMPT_FILE
    if not meta_path.is_file() or not prompt_path.is_file():
        raise ConfigError(f"{where}: {folder} is not a pre-trained prompt (it needs {META_FILE} and {PROMPT_FILE}, "
                          f"as `workbench ppt pretrain --out DIR` writes them)", field="method.init")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {meta_path}: not readable JSON ({e})", field="method.init") from None
    missing = [k for k in ("model", "identity", "format", "prompt_tokens") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ConfigError(f"{where}: {meta_path}: no {missing[0]!r} field; was it written by `workbench ppt "
                          f"pretrain`?", field="method.init")
    return PromptArtifact(folder, meta)


def resolve_prompt(spec: str, tracking_uri: str | None) -> PromptArtifact:
    """`ppt:DIR` or `ppt:RUN_ID` (the MLflow run of a `workbench ppt pretrain`, downloaded once into the cache)."""
    from workbench.models.aliases import cache_root

    target = spec[len(PREFIX):]
    where = f"method.init {spec!r}"
    folder = Path(os.path.expanduser(target))
    if folder.exists():
        return read_prompt(folder, where)
    if not RUN_ID.fullmatch(target):
        raise ConfigError(f"{where}: no folder {target} and not an MLflow run id (32 hex digits)", field="method.init")
    cached = cache_root() / "ppt" / target
    if not (cached / META_FILE).is_file():
        from workbench.tracking import resolve_tracking_uri
        from workbench.tracking.runs import download_artifact

        uri = resolve_tracking_uri(tracking_uri)
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            download_artifact(target, ARTIFACT_DIR, uri, cached.parent / (target + ".part"))
        except Exception as e:  # MLflow raises several types for a missing run or artifact
            raise ConfigError(f"{where}: run {target} in {uri} has no {ARTIFACT_DIR}/ artifact "
                              f"({str(e).splitlines()[0]})", field="method.init") from None
        os.replace(cached.parent / (target + ".part") / ARTIFACT_DIR, cached)
    return read_prompt(cached, where)


def same_model(a: dict, b: dict) -> bool:
    for key in _IDENTITY_KEYS:
        if a.get(key) and b.get(key):
            return a[key] == b[key]
    return (a.get("alias") or a.get("name")) == (b.get("alias") or b.get("name")) and a.get("revision") == b.get(
        "revision")


def describe_identity(model: str, identity: dict) -> str:
    digest = identity.get("converted_sha256") or identity.get("sha256")
    return f"{model} (sha256 {digest[:12]}...)" if digest else model


def check_fits(artifact: PromptArtifact, model: str, identity: dict, tokens: int, where: str,
               tokens_field: str = "method.num_virtual_tokens") -> None:
    """Refuse a prompt pre-trained on another model, or with another number of tokens, before weights load."""
    if not same_model(artifact.meta["identity"], identity):
        raise ConfigError(f"{where}: the prompt in {artifact.folder} was pre-trained on "
                          f"{describe_identity(artifact.model, artifact.meta['identity'])}, but this run uses "
                          f"{describe_identity(model, identity)}; a prompt only fits the model it was trained on: "
                          f"pre-train one with `workbench ppt pretrain --model {model}`", field="method.init")
    if artifact.tokens != tokens:
        raise ConfigError(f"{tokens_field}: {tokens} tokens, but the prompt in {artifact.folder} has "
                          f"{artifact.tokens}; set {tokens_field.split('.')[-1]}={artifact.tokens} (or pre-train "
                          f"with --prompt-tokens {tokens})", field=tokens_field)
    artifact.tensor()  # the file itself, read now: a damaged or substituted one is refused before weights load
