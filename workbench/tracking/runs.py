"""The MLflow run lifecycle, in one place: the tracking URI, a reachable-store check, one context manager
per run (`RunTracker`: new, nested or re-opened), and finding a finished run whose config matches.

`RunTracker` is the only code in the package that starts or ends an MLflow run. Its logging methods
address the run by id, so they stay correct while another run is the active one.

Metric names are part of the interface (DESIGN.md): train/loss, eval/accuracy, test/accuracy,
trainable_params, trainable_fraction, train/seconds, train/examples_per_s, peak_mem_mb. Add, never rename.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import yaml

from workbench.errors import WorkbenchError
from workbench.tracking.guide import NOTE_TAG, describe_experiment
from workbench.tracking.uris import hide_run_links, redact_url, redact_value, tracking_uri_problem
from workbench.tracking.workers import reap_orphan_runs, worker_tags

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PACKAGES = ("torch", "transformers", "peft", "optuna", "mlflow", "datasets", "prompt-workbench")
MAX_PARAM_CHARS = 500  # MLflow's limit on a param value (older servers; newer ones allow more)
MAX_TAG_CHARS = 4000


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The argument, else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def sqlite_lock(url: str):
    """Hold an exclusive lock beside a SQLite store while it may be created: two workers starting at once
    would otherwise both create (and migrate) its tables. Other URLs need no lock."""
    path = url.split("///", 1)[1] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:" or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        yield
        return
    import fcntl

    with open(os.path.abspath(path) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def describe_uri(uri: str | None) -> str:
    """The resolved URI, redacted, and where it came from when the caller did not give it."""
    resolved = resolve_tracking_uri(uri)
    origin = "" if uri or not os.environ.get("MLFLOW_TRACKING_URI") else " (from $MLFLOW_TRACKING_URI)"
    return f"{redact_url(resolved)!r}{origin}"


def check_tracking_uri(uri: str | None) -> str:
    """Fail with one line, in a few seconds at most and before any run starts, when the MLflow store cannot be used;
    returns the URI. A malformed URI, an unknown scheme, a SQLite file in a missing folder (MLflow would create the
    folder silently) and a server that does not accept a connection are refused without asking MLflow; then the
    store is asked once, without retries. A SQLite file that does not exist yet is not created here."""
    import mlflow

    label, uri = describe_uri(uri), resolve_tracking_uri(uri)
    hide_run_links(uri)
    problem = tracking_uri_problem(uri)
    if problem:
        raise WorkbenchError(f"cannot use MLflow tracking URI {label}: {problem}")
    sqlite_file = uri.split("///", 1)[1].split("?", 1)[0] if uri.startswith("sqlite:///") else None
    if sqlite_file is not None and not os.path.exists(os.path.expanduser(sqlite_file)):
        return uri  # its folder exists and is writable: the first run creates the store
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        with sqlite_lock(uri):
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:
        raise WorkbenchError(f"cannot use MLflow tracking URI {label}: {redact_url(_first_line(e))[:300]}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return uri


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags() -> dict[str, str]:
    """Code versions, and the process that runs the run (`workbench.worker`: how an orphaned run is found)."""
    tags = {"git_commit": git_commit(), "python": platform.python_version(), **worker_tags()}
    for name in PACKAGES:
        try:
            tags[f"version/{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return tags


def flatten_params(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys; values become strings, passwords in URLs redacted (`user:***@`), cut to
    MLflow's param length."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(v, key + "."))
        else:
            out[key] = redact_url(str(v))[:MAX_PARAM_CHARS]
    return out


def metric_name(name: str) -> str:
    """MLflow allows alphanumerics, _ - . / and space in a metric name; other characters become _."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def find_matching_run(experiment: str, uri: str | None, tags: dict[str, str], params: dict[str, str]) -> str | None:
    """The newest FINISHED run in `experiment` with these tags and exactly these params, or None."""
    import mlflow

    client = mlflow.MlflowClient(resolve_tracking_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    # values with quotes or brackets (a model's identity) cannot go in a filter string: compare those here
    simple = {k: v for k, v in tags.items() if re.fullmatch(r"[\w.:/@+-]*", v) and re.fullmatch(r"[\w.:/-]+", k)}
    filt = " and ".join([f"tags.`{k}` = '{v}'" for k, v in simple.items()] + ["attributes.status = 'FINISHED'"])
    for run in client.search_runs([exp.experiment_id], filt, order_by=["attributes.start_time DESC"],
                                  max_results=200):
        have = run.data
        if have.tags.get("reused_from") or any(have.tags.get(k) != v for k, v in tags.items()):
            continue
        if all(have.params.get(k) == v for k, v in params.items()) and "test/accuracy" in have.metrics:
            return run.info.run_id
    return None


PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def download_artifact(run_id: str, artifact_path: str, uri: str | None, into: Path) -> Path:
    """A run's artifact (a file or folder) copied under `into`, without MLflow's progress bar (small files: a bar
    would only break the lines around it). MLflow's own exception passes through."""
    import mlflow

    bar = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                        dst_path=str(into), tracking_uri=resolve_tracking_uri(uri)))
    finally:
        if bar is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = bar


class NullTracker:
    """Stands in for a RunTracker in the processes of a distributed job other than the first: the job is one run,
    written by rank 0; here every logging call does nothing and there is no run id."""

    run_id = None

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def job_tracker(*args, **kwargs):
    """A RunTracker, or in a distributed job's processes other than the first, a NullTracker."""
    from workbench.training.distributed import is_main

    return RunTracker(*args, **kwargs) if is_main() else NullTracker()


class RunTracker:
    """Context manager for one MLflow run.

    `nested=None` nests the run under the active run when there is one; `resume_run_id` re-opens that
    run (its tags are left as they are, but for the worker tags, which name this process now). On exit the
    run ends FINISHED, KILLED on Ctrl-C, or FAILED with an `error` tag; the exception is never swallowed.

    On entry, the experiment's runs left RUNNING by a process of this host that is gone (killed with
    `kill -9`, a crash of the machine) are marked KILLED (`workbench.tracking.workers`). Everything logged goes
    through `redact_url`: a password in a URL (the tracking URI in a config, an error) is never stored.
    """

    def __init__(self, experiment: str, run_name: str | None = None, uri: str | None = None, *,
                 tags: dict | None = None, nested: bool | None = None, resume_run_id: str | None = None):
        import mlflow

        self.mlflow = mlflow
        self.uri = resolve_tracking_uri(uri)
        self.experiment, self.run_name, self.nested = experiment, run_name, nested
        self.tags = dict(tags or {})
        self.resume_run_id = resume_run_id
        self.run_id: str | None = None
        self.client = None
        self.reaped: list[str] = []  # orphaned runs this tracker marked KILLED on entry

    # -- lifecycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> RunTracker:
        mlflow = self.mlflow
        hide_run_links(self.uri)  # before anything can end a run on this store
        problem = tracking_uri_problem(self.uri)  # quick: never let MLflow create a folder or retry for minutes
        if problem:
            raise WorkbenchError(f"cannot use MLflow tracking URI {redact_url(self.uri)!r}: {problem}")
        mlflow.set_tracking_uri(self.uri)
        try:
            with sqlite_lock(self.uri):
                experiment = mlflow.set_experiment(self.experiment)
        except Exception as e:  # MLflow raises many types for a bad store; the user needs the URI
            raise WorkbenchError(f"cannot use MLflow tracking URI {redact_url(self.uri)!r}: "
                                 f"{redact_url(_first_line(e))[:300]}") from None
        nested = mlflow.active_run() is not None if self.nested is None else self.nested
        if self.resume_run_id:
            run = mlflow.start_run(run_id=self.resume_run_id, nested=nested)
        else:
            run = mlflow.start_run(run_name=self.run_name, nested=nested)
        self.run_id = run.info.run_id
        self.client = mlflow.MlflowClient(self.uri)
        describe_experiment(self.client, experiment)  # the UI's description of what to filter, show and plot
        try:
            # a re-opened run keeps its tags, but it is this process's now: others must not take it for an orphan
            self.set_tags(worker_tags() if self.resume_run_id else {**environment_tags(), **self.tags})
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        self._reap(experiment.experiment_id)
        return self

    def _reap(self, experiment_id: str) -> None:
        try:
            self.reaped = reap_orphan_runs(self.client, [experiment_id], exclude=(self.run_id,))
        except Exception:  # best effort: a store that cannot search must not stop this run
            return
        if self.reaped:
            import sys

            print(f"marked {len(self.reaped)} MLflow run(s) KILLED, left RUNNING by a process that died: "
                  f"{', '.join(self.reaped)}", file=sys.stderr, flush=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
            try:
                self.client.set_tag(self.run_id, "error",
                                    redact_url(f"{exc_type.__name__}: {exc}")[:MAX_TAG_CHARS])
            except Exception:  # the store failing too must not hide the exception that ended the run
                pass
        active = self.mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            self.mlflow.end_run(status=status)
        else:  # another run was left active on top of this one: end this one by id
            self.client.set_terminated(self.run_id, status)

    # -- logging (by run id) -------------------------------------------------------------------------------

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        flat = flatten_params(params)
        if flat:
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()])

    def log_config(self, config: dict) -> None:
        self.log_params(config)
        self.log_text(yaml.safe_dump(redact_value(config), sort_keys=False), "config.yaml")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_name(k), float(v), now, step or 0) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, redact_url(str(v))) for k, v in tags.items()])

    def log_dict(self, data, name: str) -> None:
        self.client.log_dict(self.run_id, redact_value(data), name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, redact_url(text), name)

    def log_json(self, data, name: str) -> None:
        self.log_text(json.dumps(data, indent=1), name)

    def set_note(self, markdown: str) -> None:
        """The run's description (`mlflow.note.content`): MLflow's UI renders it as markdown on the run page. A note
        over MLflow's 8,000 characters for a tag is cut at a line end, and says so."""
        text, limit = redact_url(markdown), 8000
        if len(text) > limit:
            tail = "\n\n_(cut here: too long for a description; the full table is among the run's artifacts)_\n"
            text = text[:text.rfind("\n", 0, limit - len(tail)) + 1].rstrip() + tail
        self.client.set_tag(self.run_id, NOTE_TAG, text)

    def log_table(self, data: dict[str, Sequence], artifact_file: str = "comparison_table.json", *,
                  replace: bool = True) -> None:
        """A table (column name -> values) as a JSON artifact MLflow's UI shows as a table (`MlflowClient.log_table`).
        MLflow appends to a table that exists already; `replace` writes this one in its place instead (a sweep's
        table of trials, rewritten as trials finish)."""
        import pandas as pd

        frame = pd.DataFrame({k: list(v) for k, v in data.items()})
        frame = frame.map(lambda v: redact_url(v) if isinstance(v, str) else v)
        folder = os.path.dirname(artifact_file) or None
        exists = any(a.path == artifact_file for a in self.client.list_artifacts(self.run_id, folder))
        if exists and replace:  # the same layout as MLflow's own (split orient), registered as a table already
            self.client.log_text(self.run_id, frame.to_json(orient="split", index=False, date_format="iso"),
                                 artifact_file)
        else:
            self.client.log_table(self.run_id, frame, artifact_file)

    def log_figure(self, fig, name: str) -> None:
        self.client.log_figure(self.run_id, fig, name)

    def log_artifacts(self, folder: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, folder, artifact_path)

    def log_predictions(self, guids: Sequence[str], labels: Sequence[int], predictions: Sequence[int],
                        scores, label_names: Sequence[str], name: str = "predictions.csv",
                        texts: dict[str, Sequence[str]] | None = None) -> None:
        """One row per scored example: its id, its input text (a column per text field, so an error can be read
        where it is found), gold label, prediction and class scores."""
        texts = texts or {}
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["guid", *texts, "label", "prediction", *[f"score_{n}" for n in label_names]])
        for i, (g, y, p, s) in enumerate(zip(guids, labels, predictions, scores)):
            writer.writerow([g, *(column[i] for column in texts.values()), label_names[y], label_names[p],
                             *[f"{v:.5f}" for v in s]])
        self.log_text(buf.getvalue(), name)

    def log_confusion(self, labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str],
                      name: str = "confusion_matrix.png") -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import ConfusionMatrixDisplay

        fig, ax = plt.subplots(figsize=(1.2 * len(label_names) + 2, 1.2 * len(label_names) + 1.5))
        ConfusionMatrixDisplay.from_predictions(labels, predictions, labels=list(range(len(label_names))),
                                                display_labels=list(label_names), ax=ax, colorbar=False)
        ax.set_title("test confusion matrix")
        fig.tight_layout()
        self.log_figure(fig, name)
        plt.close(fig)
