"""Bad tracking URIs, sweep storages, studies, models and dashboard settings, one row each: refused in one line
that names the URI, field, flag, file or folder, with exit code 2, no traceback, before any model weights load
(tests/bad_inputs.py), in a few seconds (an unreachable server is not retried for minutes), without creating
the folder a URI names, and without a password of a URL in the message.

After the table: a study that exists needs --resume and the same settings, a port in use, and the train path
(which checks its tracking URI only after the model loads until the one-model job checks it first).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time

import pytest
from bad_inputs import Case, run_case

# A task a sweep can run (template and verbalizer included): each row is wrong in its one way only.
TASK = ("name: tiny\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\nlabel_names: [neg, pos]\n"
        "templates: tpl.txt\nverbalizer: v.txt\n")
TRAIN = "text\tlabel\n" + "".join(f"row {i}\t{'neg' if i % 2 else 'pos'}\n" for i in range(12))
TEST = "text\tlabel\nfine\tpos\nawful\tneg\n"
FILES = {"task.yaml": TASK, "train.tsv": TRAIN, "test.tsv": TEST,
         "tpl.txt": '{"placeholder": "text_a"} It was {"mask"}.\n', "v.txt": "bad\ngood\n"}

SWEEP = ["sweep", "--method", "lora", "--task", "task.yaml", "--shots", "2", "--no-final"]
COMPARE = ["compare", "--task", "task.yaml", "--shots", "2", "--methods", "finetune", "--seeds", "13"]
TRAIN = ["train", "--method", "finetune", "--task", "task.yaml", "--shots", "2", "--max-steps", "1"]
REFUSED = "127.0.0.1:9 refused the connection"  # port 9 (discard) is closed on any sane machine
MISSING = "{tmp}/no/such/folder"



def converted_identity(config_sha: str) -> str:
    """The identity of a folder converted by the workbench, recording config.json and tokenizer.json."""
    return json.dumps({"alias": "smollm2-135m", "file": "x.gguf", "sha256": "a" * 64, "kind": "causal",
                       "files": {"config.json": config_sha, "tokenizer.json": "1" * 64}})


CONVERTED_IDENTITY = converted_identity("0" * 64)  # config.json ("{}") no longer matches
MISSING_FILE_IDENTITY = converted_identity(hashlib.sha256(b"{}").hexdigest())  # config.json matches
DAMAGED_ALIAS = {"cache/models/minilm-l6/hf/workbench-identity.json": json.dumps({"alias": "minilm-l6"}),
                 "cache/models/minilm-l6/model.zip": b"PK not the model"}
CACHE_ENV = {"WORKBENCH_CACHE": "{tmp}/cache"}

CASES = [
    # --- MLflow tracking URIs --------------------------------------------------------------------------------------
    Case("tracking-sqlite-missing-folder", [*SWEEP, "--tracking-uri", f"sqlite:///{MISSING}/mlflow.db"],
         ["cannot use MLflow tracking URI", f"folder {MISSING} does not exist"], FILES),
    Case("tracking-env-sqlite-missing-folder", SWEEP, ["(from $MLFLOW_TRACKING_URI)", f"folder {MISSING} does not"],
         FILES, {"MLFLOW_TRACKING_URI": f"sqlite:///{MISSING}/mlflow.db"}),
    Case("tracking-sqlite-under-a-file", [*SWEEP, "--tracking-uri", "sqlite:///{tmp}/a-file/mlflow.db"],
         "{tmp}/a-file is not a folder", {**FILES, "a-file": ""}),
    Case("tracking-sqlite-is-a-folder", [*SWEEP, "--tracking-uri", "sqlite:///{tmp}/runs"],
         "{tmp}/runs is a folder, not a SQLite file", {**FILES, "runs/keep": ""}),
    Case("tracking-sqlite-not-a-database", [*SWEEP, "--tracking-uri", "sqlite:///notes.db"],
         "notes.db is not a SQLite database", {**FILES, "notes.db": "hello\n"}),
    Case("tracking-sqlite-two-slashes", [*SWEEP, "--tracking-uri", "sqlite://mlflow.db"], "malformed SQLite URL",
         FILES),
    Case("tracking-unknown-scheme", [*SWEEP, "--tracking-uri", "foo://bar"], "unsupported scheme 'foo'", FILES),
    Case("tracking-scheme-without-colon", [*SWEEP, "--tracking-uri", "http//localhost:5000"], "malformed URI", FILES),
    Case("tracking-scheme-one-slash", [*SWEEP, "--tracking-uri", "http:/localhost:5000"], "malformed URI", FILES),
    Case("tracking-bad-port", [*SWEEP, "--tracking-uri", "http://localhost:99999"], "malformed port", FILES),
    Case("tracking-http-unreachable", [*SWEEP, "--tracking-uri", "http://127.0.0.1:9"],
         ["'http://127.0.0.1:9'", REFUSED], FILES),
    Case("tracking-http-unreachable-compare", [*COMPARE, "--tracking-uri", "http://127.0.0.1:9"], REFUSED, FILES),
    # predict once asked MLflow's client, which retries an unreachable server for minutes; now the same check
    Case("tracking-http-unreachable-predict",
         ["predict", "--run", "0123456789abcdef", "--input", "in.tsv", "--tracking-uri", "http://127.0.0.1:9"],
         ["'http://127.0.0.1:9'", REFUSED], {"in.tsv": "text\nnice\n"}),
    Case("tracking-env-http-unreachable-predict", ["predict", "--run", "0123456789abcdef", "--input", "in.tsv"],
         ["(from $MLFLOW_TRACKING_URI)", REFUSED], {"in.tsv": "text\nnice\n"},
         {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("tracking-env-http-unreachable", COMPARE, ["(from $MLFLOW_TRACKING_URI)", REFUSED], FILES,
         {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("tracking-http-password-redacted", [*SWEEP, "--tracking-uri", "http://user:secret@127.0.0.1:9"],
         ["'http://user:***@127.0.0.1:9'", REFUSED], FILES),
    Case("tracking-postgres-password-redacted", [*SWEEP, "--tracking-uri", "postgresql://u:secret@127.0.0.1:9/db"],
         ["'postgresql://u:***@127.0.0.1:9/db'", REFUSED], FILES),
    # --- sweep storage -----------------------------------------------------------------------------------------------
    Case("storage-sqlite-missing-folder", [*SWEEP, "--storage", f"sqlite:///{MISSING}/optuna.db"],
         ["sweep.storage (--storage)", f"folder {MISSING} does not exist"], FILES),
    Case("storage-env-missing-folder", SWEEP, ["(from $WORKBENCH_SWEEP_STORAGE)", f"folder {MISSING} does not exist"],
         FILES, {"WORKBENCH_SWEEP_STORAGE": f"sqlite:///{MISSING}/optuna.db"}),
    Case("storage-sqlite-is-a-folder", [*SWEEP, "--storage", "sqlite:///{tmp}/studies"],
         "{tmp}/studies is a folder", {**FILES, "studies/keep": ""}),
    Case("storage-sqlite-not-a-database", [*SWEEP, "--storage", "sqlite:///notes.db"],
         "notes.db is not a SQLite database", {**FILES, "notes.db": "hello\n"}),
    Case("storage-sqlite-two-slashes", [*SWEEP, "--storage", "sqlite://optuna.db"], "malformed SQLite URL", FILES),
    Case("storage-not-a-url", [*SWEEP, "--storage", "optuna.db"], ["'optuna.db'", "malformed URL"], FILES),
    Case("storage-unknown-database", [*SWEEP, "--storage", "foo://host/db"], "unknown database 'foo'", FILES),
    Case("storage-postgres-unreachable-redacted", [*SWEEP, "--storage", "postgresql://u:secret@127.0.0.1:9/optuna"],
         ["'postgresql://u:***@127.0.0.1:9/optuna'", REFUSED], FILES),
    Case("storage-password-in-query-redacted", [*SWEEP, "--storage", "postgresql://127.0.0.1:9/db?password=secret"],
         ["password=***", REFUSED], FILES),
    # --- studies -----------------------------------------------------------------------------------------------------
    Case("study-name-blank", [*SWEEP, "--study-name", "   "], "sweep.study_name (--study-name): empty", FILES),
    Case("study-name-spaces", [*SWEEP, "--study-name", " mine"], "starts or ends with spaces", FILES),
    Case("study-name-newline", [*SWEEP, "--study-name", "a\nb"], "control character", FILES),
    Case("study-name-too-long", [*SWEEP, "--study-name", "s" * 300], "300 characters; at most 200", FILES),
    Case("trials-zero", [*SWEEP, "--trials", "0"], "sweep.trials (--trials): 0 is not allowed", FILES),
    Case("trials-negative", [*SWEEP, "--trials", "-1"], "sweep.trials (--trials): -1 is not allowed", FILES),
    Case("trials-not-an-int", [*SWEEP, "--trials", "1.5"], "--trials: invalid int value", FILES),
    Case("timeout-negative", [*SWEEP, "--timeout", "-1"], "sweep.timeout (--timeout)", FILES),
    Case("timeout-zero", [*SWEEP, "--timeout", "0"], "sweep.timeout (--timeout)", FILES),
    Case("timeout-nan", [*SWEEP, "--timeout", "nan"], "sweep.timeout (--timeout): nan", FILES),
    Case("max-failures-zero", [*SWEEP, "--max-failures", "0"],
         "sweep.max_failures (--max-failures): 0 is not allowed; expected an integer in [1, 100000]", FILES),
    Case("max-failures-negative", [*SWEEP, "--max-failures", "-2"], "sweep.max_failures (--max-failures)", FILES),
    Case("pruner-unknown", [*SWEEP, "--pruner", "hyperband"], "--pruner: invalid choice", FILES),
    Case("trial-eval-limit-zero", [*SWEEP, "--trial-eval-limit", "0"], "sweep.trial_eval_limit", FILES),
    Case("baseline-trials-negative", [*SWEEP, "--baseline-trials", "-1"], "sweep.baseline_trials", FILES),
    Case("final-seeds-not-ints", [*SWEEP[:-1], "--final-seeds", "a,b"], "--final-seeds 'a,b'", FILES),
    # --- models ------------------------------------------------------------------------------------------------------
    Case("models-pull-unknown-alias", ["models", "pull", "gpt-17"], "unknown model alias 'gpt-17'"),
    Case("models-show-unknown-offline", ["models", "show", "gpt-17"], ["cannot load model 'gpt-17'", "HF_HUB_OFFLINE"],
         env={"HF_HUB_OFFLINE": "1"}),
    Case("models-show-alias-typo", ["models", "show", "smollm2-13m"], "did you mean 'smollm2-135m'?"),
    Case("models-show-missing-folder", ["models", "show", "./no-such-model"], "folder ./no-such-model does not exist"),
    Case("models-show-not-a-name", ["models", "show", "my model!"], "not an alias"),
    Case("models-show-a-file", ["models", "show", "{tmp}/weights.bin"], "is a file; expected a model folder",
         {"weights.bin": b"\0" * 16}),
    Case("models-show-damaged-source", ["models", "show", "minilm-l6"],
         ["model.zip is corrupted", "run: workbench models pull minilm-l6 --force"], DAMAGED_ALIAS, CACHE_ENV),
    Case("train-damaged-source", [*TRAIN, "--model", "minilm-l6"],
         ["model.zip is corrupted", "run: workbench models pull minilm-l6 --force"], {**FILES, **DAMAGED_ALIAS},
         CACHE_ENV),
    Case("models-show-damaged-converted-file", ["models", "show", "{tmp}/conv"],
         ["{tmp}/conv/config.json is damaged", "run: workbench models pull smollm2-135m --force"],
         {"conv/workbench-identity.json": CONVERTED_IDENTITY, "conv/config.json": "{}",
          "conv/tokenizer.json": "{}"}),
    Case("train-missing-converted-file", [*TRAIN, "--model", "{tmp}/conv"],
         ["{tmp}/conv/tokenizer.json is missing", "workbench models pull smollm2-135m --force"],
         {**FILES, "conv/workbench-identity.json": MISSING_FILE_IDENTITY, "conv/config.json": "{}"}),
    Case("sweep-model-alias-typo", [*SWEEP, "--model", "gemma3-27m"], "did you mean 'gemma3-270m'?", FILES),
    # --- dashboard ---------------------------------------------------------------------------------------------------
    Case("dashboard-port-too-big", ["dashboard", "--port", "70000"], "--port 70000: not a port number"),
    Case("dashboard-port-negative", ["dashboard", "--port", "-1"], "--port -1: not a port number"),
    Case("dashboard-port-zero", ["dashboard", "--port", "0"], "--port 0: not a port number"),
    Case("dashboard-port-not-a-number", ["dashboard", "--port", "abc"], "--port: invalid int value: 'abc'"),
    Case("dashboard-host-unknown", ["dashboard", "--host", "no-such-host.invalid"], "--host 'no-such-host.invalid'"),
    Case("dashboard-host-empty", ["dashboard", "--host", ""], "--host ''"),
    Case("dashboard-tracking-server", ["dashboard", "--tracking-uri", "http://127.0.0.1:9"],
         "is a tracking server already"),
    Case("dashboard-sqlite-missing-folder", ["dashboard", "--tracking-uri", f"sqlite:///{MISSING}/mlflow.db"],
         f"folder {MISSING} does not exist"),
    Case("dashboard-env-sqlite-missing-folder", ["dashboard"], ["(from $MLFLOW_TRACKING_URI)", "does not exist"],
         env={"MLFLOW_TRACKING_URI": f"sqlite:///{MISSING}/mlflow.db"}),
    Case("dashboard-not-a-database", ["dashboard", "--tracking-uri", "sqlite:///notes.db"],
         "is not a SQLite database", {"notes.db": "hello\n"}),
    Case("dashboard-unknown-scheme", ["dashboard", "--tracking-uri", "foo://x"], "unsupported scheme 'foo'"),
    Case("dashboard-postgres-unreachable-redacted", ["dashboard", "--tracking-uri",
                                                     "postgresql://u:secret@127.0.0.1:9/mlflow"],
         ["'postgresql://u:***@127.0.0.1:9/mlflow'", REFUSED]),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    start = time.monotonic()
    message = run_case(case, tmp_path, monkeypatch, capsys)
    assert time.monotonic() - start < 30, "refused too slowly: an unreachable store must not be retried"
    assert "secret" not in message
    assert not (tmp_path / "no").exists(), "a folder named by a URI was created"


def test_table_is_large_enough():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


def test_unreachable_server_fails_in_seconds():
    from workbench.errors import WorkbenchError
    from workbench.tracking import check_tracking_uri

    start = time.monotonic()
    with pytest.raises(WorkbenchError, match="refused"):
        check_tracking_uri("http://127.0.0.1:9")
    assert time.monotonic() - start < 5


def test_port_in_use(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        run_case(Case("port-in-use", ["dashboard", "--port", str(port)], f"--port {port}: 127.0.0.1:{port} is in use"),
                 tmp_path, monkeypatch, capsys)


# --- a study that exists: --resume and the same settings (needs a model folder to get that far) -------------------


def _sweep_argv(folder, *extra: str) -> list[str]:
    return ["sweep", "--method", "finetune", "--task", "task.yaml", "--shots", "2", "--model", str(folder),
            "--max-steps", "2", "--storage", "sqlite:///optuna.db", "--study-name", "s", "--no-final", *extra]


def _study_with_a_trial(tmp_path, protocol: dict):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as the sweep sets it: no "new study" line on stderr
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s", direction="maximize")
    study.set_user_attr("protocol", protocol)
    study.add_trial(optuna.trial.create_trial(value=0.5))


@pytest.fixture()
def model_folder(tiny_mlm_dir, capsys):
    capsys.readouterr()  # saving the fixture's model printed a progress bar
    return tiny_mlm_dir[0]


def test_existing_study_needs_resume(tmp_path, monkeypatch, capsys, model_folder):
    folder = model_folder
    _study_with_a_trial(tmp_path, {})
    run_case(Case("exists", _sweep_argv(folder), ["study 's' already holds 1 trial(s)", "pass --resume"], FILES),
             tmp_path, monkeypatch, capsys)


def test_resume_with_other_settings(tmp_path, monkeypatch, capsys, model_folder):
    folder = model_folder
    _study_with_a_trial(tmp_path, {"train.max_steps": 99})
    run_case(Case("other", _sweep_argv(folder, "--resume"), ["was run with other settings", "'train.max_steps': (99"],
                  FILES), tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("uri, expect", [("http://127.0.0.1:9", REFUSED), (f"sqlite:///{MISSING}/m.db", "does not")])
def test_train_refuses_the_tracking_uri_before_the_model_loads(uri, expect, tmp_path, monkeypatch, capsys,
                                                                model_folder):
    folder = model_folder
    run_case(Case("train", [*TRAIN, "--model", str(folder), "--tracking-uri", uri], expect, FILES), tmp_path,
             monkeypatch, capsys)
