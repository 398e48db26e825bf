"""A file handed over must never run code, and a secret must never be shown: a pickle with a side effect put in
place of a checkpoint (`ppt pretrain` resumes from `OUT/checkpoint.pt`), a prompt artifact (`init=ppt:DIR`, or the
cache a `ppt:RUN_ID` is downloaded into) or cached member scores (PET's `scores.npz`) is refused in one line
naming the file, and its side effect (making a folder) never happens. A password planted in the tracking URI (an
HTTP store served in a thread) reaches no output: stdout, stderr, the run's params and tags, its artifacts; a key
given as a flag is refused and never repeated.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import Case, run_case
from conftest import requires_data

MARKER = "code-ran"  # the folder the planted pickles make when they are unpickled (relative: the case's folder)


class _SideEffect:
    """Unpickling this makes the folder MARKER: what any code a pickle could run stands for."""

    def __init__(self, marker: str = MARKER):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


EVIL = pickle.dumps({"step": 4, "params": _SideEffect()})  # a plain pickle, as torch's legacy format reads


def evil_torch_save() -> bytes:
    """The same payload in torch.save's zip format, beside real tensors: the file a real checkpoint would be."""
    import io

    buffer = io.BytesIO()
    torch.save({"step": 4, "params": {"w": torch.zeros(2)}, "optimizer": {}, "scheduler": {},
                "best": _SideEffect()}, buffer)
    return buffer.getvalue()


# ---- through the command line: refused in one line, before any weights load, nothing run --------------------------

MODEL = json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 100,
                    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                    "max_position_embeddings": 64})
CORPUS = "".join(f" = Part {d} = \n" + " ".join(f"The story number {d} had a twist in part {i} of the book."
                                                 for i in range(6)) + "\n\n" for d in range(6))
PRETRAIN = ["ppt", "pretrain", "--corpus", "c.txt", "--out", "p", "--model", "m", "--format", "nsp",
            "--examples", "40", "--heldout", "8", "--prompt-tokens", "4", "--no-progress"]
RUN_ID = "ab" * 16


def _pretrain_state() -> str:
    """The state.json a stopped `PRETRAIN` leaves, so the command resumes from the folder's checkpoint."""
    from workbench.recipes.ppt import PretrainConfig

    cfg = PretrainConfig(corpus="c.txt", out="p", model="m", format="nsp", examples=40, heldout=8, prompt_tokens=4)
    return json.dumps({"config": cfg.identity()})


def _artifact(folder: str, prompt: bytes) -> dict[str, str | bytes]:
    meta = {"model": "m", "identity": {"name": "m"}, "format": "cls", "prompt_tokens": 20, "hidden_size": 32}
    return {f"{folder}/ppt.json": json.dumps(meta), f"{folder}/prompt.safetensors": prompt}


TRAIN = ["train", "--task", "sst2", "--method", "prompt-tuning", "--model", "m", "--max-steps", "1"]
CASES = [
    Case("checkpoint-plain-pickle", PRETRAIN, ["p/checkpoint.pt", "refused", "nothing in it was run"],
         {"c.txt": CORPUS, "m/config.json": MODEL, "p/state.json": _pretrain_state(), "p/checkpoint.pt": EVIL}),
    Case("checkpoint-torch-save-with-object", PRETRAIN, ["p/checkpoint.pt", "refused", "nothing in it was run"],
         {"c.txt": CORPUS, "m/config.json": MODEL, "p/state.json": _pretrain_state(),
          "p/checkpoint.pt": evil_torch_save()}),
    Case("prompt-artifact-pickle", [*TRAIN, "--option", "init=ppt:art"],
         ["art/prompt.safetensors", "not readable as safetensors"],
         {"m/config.json": MODEL, **_artifact("art", EVIL)}),
    Case("prompt-cache-pickle", [*TRAIN, "--option", f"init=ppt:{RUN_ID}"],
         [f"cache/ppt/{RUN_ID}/prompt.safetensors", "not readable as safetensors"],
         {"m/config.json": MODEL, **_artifact(f"cache/ppt/{RUN_ID}", EVIL)}, env={"WORKBENCH_CACHE": "{tmp}/cache"}),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_planted_pickle_is_refused_without_running(case, tmp_path, monkeypatch, capsys):
    run_case(case, tmp_path, monkeypatch, capsys)
    assert not (tmp_path / MARKER).exists(), "the pickle's code ran"


# ---- the readers themselves ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [EVIL, evil_torch_save()], ids=["plain-pickle", "torch-save"])
def test_read_checkpoint_refuses_objects(payload, tmp_path):
    from workbench.errors import WorkbenchError
    from workbench.training.trainer import read_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(payload)
    with pytest.raises(WorkbenchError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert "weights_only" not in str(e.value)  # torch's advice to load it unsafely is not passed on
    assert not (tmp_path / MARKER).exists()


def test_read_checkpoint_reads_what_train_writes(tmp_path):
    """weights_only=True must still read every checkpoint the trainer writes (best value -inf, no best state yet)."""
    from workbench.training.trainer import read_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    snapshot = {"step": 3, "params": {"weight": model.weight.detach().clone()}, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best": {"step": 0, "value": float("-inf"), "state": None},
                "history": [{"step": 1, "train/loss": 0.5}], "evals_since_best": 0, "torch_rng": torch.get_rng_state()}
    torch.save(snapshot, tmp_path / "checkpoint.pt")
    back = read_checkpoint(tmp_path / "checkpoint.pt")
    assert back["step"] == 3 and back["best"]["value"] == float("-inf")
    assert torch.equal(back["params"]["weight"], snapshot["params"]["weight"])


def test_pet_scores_pickle_is_refused(tmp_path):
    from workbench.errors import WorkbenchError
    from workbench.recipes.pet import Scores

    path = tmp_path / "scores.npz"
    path.write_bytes(EVIL)
    with pytest.raises(WorkbenchError) as e:
        Scores.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    np.savez(path, prior=0.5, dev=np.array([_SideEffect()], dtype=object), test=np.zeros(1), pool=np.zeros(1),
             seconds=np.zeros(3))  # an object array inside a real .npz is a pickle too
    with pytest.raises(WorkbenchError):
        Scores.load(path)
    assert not (tmp_path / MARKER).exists()


def test_pet_scores_round_trip(tmp_path):
    from workbench.recipes.pet import Scores

    s = Scores(0.5, np.ones((2, 2)), np.zeros((1, 2)), np.zeros((0, 2)), 1.0, 2.0, 3.0)
    s.save(tmp_path / "scores.npz")
    back = Scores.load(tmp_path / "scores.npz")
    assert back.prior == 0.5 and np.array_equal(back.dev, s.dev) and back.pool_seconds == 3.0


# ---- a secret planted in the tracking URI never reaches any output ---------------------------------------------------

SECRET = "pl4nted-S3CRET-pw"


@pytest.fixture()
def http_store(tmp_path, monkeypatch):
    """An MLflow tracking server in a thread (MLflow's own app on this test's SQLite store, artifacts in a local
    folder the client writes to), reached through a URI that carries a user and the planted password."""
    import threading

    import mlflow.server.handlers as handlers
    from mlflow.server import app
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    (tmp_path / "artifacts").mkdir()
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    monkeypatch.setattr(handlers, "_tracking_store", store)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)  # what the workbench turns on
    from werkzeug.serving import make_server  # Flask's server, installed with MLflow's

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://wbuser:{SECRET}@127.0.0.1:{server.server_port}", store, tmp_path / "artifacts"
    finally:
        server.shutdown()


def _everything_in(folder) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in Path(folder).rglob("*") if p.is_file())


@requires_data("sst2")
def test_a_password_in_the_tracking_uri_reaches_no_output(http_store, tiny_mlm_dir, capsys, monkeypatch):
    from workbench.cli import main

    uri, store, artifacts = http_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # both ways of giving it: the environment and the flag
    folder, verbalizer = tiny_mlm_dir
    code = main(["train", "--method", "prompt-finetune", "--task", "sst2", "--model", str(folder), "--template-id",
                 "1", "--verbalizer-file", str(verbalizer), "--max-steps", "1", "--eval-limit", "8", "--shots", "4",
                 "--no-progress", "--tracking-uri", uri, "--verbose"])  # --verbose: the libraries' own lines too
    captured = capsys.readouterr()
    assert code == 0, captured.err
    runs = store.search_runs([e.experiment_id for e in store.search_experiments()], "", 1)
    assert len(runs) == 1
    run = runs[0]
    logged = json.dumps({"params": run.data.params, "tags": run.data.tags, "metrics": run.data.metrics,
                         "name": run.info.run_name})
    for name, text in [("stdout", captured.out), ("stderr", captured.err), ("params and tags", logged),
                       ("artifacts", _everything_in(artifacts))]:
        assert SECRET not in text, f"the password reached the {name}"
    assert "View run" not in captured.out  # MLflow's link holds the URI with its password: not printed


def test_a_key_given_as_a_flag_is_refused_and_never_repeated(tmp_path, monkeypatch, capsys):
    key = "sk-" + SECRET
    for argv in (["--api-key", key], [f"--api-key={key}"], ["--api-key-env", key], ["--apikey", key],
                 [f"--token={key}"]):
        case = Case(f"key-{argv[0]}", ["instruct", "self-instruct", "--no-mlflow", "--api-base",
                                        "http://127.0.0.1:9/v1", *argv], "")
        message = run_case(case, tmp_path, monkeypatch, capsys)
        assert SECRET not in message, argv
    case = Case("key-as-env-name", ["instruct", "self-instruct", "--no-mlflow", "--api-base", "http://127.0.0.1:9/v1",
                                     "--api-key-env", "abc" + SECRET.replace("-", "")], "not shown")
    assert SECRET.replace("-", "") not in run_case(case, tmp_path, monkeypatch, capsys)
