"""What MLflow's UI shows without hand work: the comparison and sweep tables as the parent run's description and a
logged table, `kind` tags, the experiment's description, and the links `workbench dashboard` prints."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import unquote

import mlflow
import pytest

from workbench.cli import main
from workbench.recipes import mlflow_ui as dashboard
from workbench.recipes.compare import CompareConfig, compare
from workbench.recipes.mlflow_ui import base_url, dashboard_links, wait_until_ready
from workbench.tracking import RunTracker, resolve_tracking_uri
from workbench.tracking.guide import (COMPARISON_VIEW_KEY, EXPERIMENT_GUIDE, GUIDE_MARKER, NOTE_TAG, RUNS_VIEW_KEY,
                                      VIEW_TAG_PREFIX, compare_url, runs_view_state)

from conftest import requires_data

BASE = "http://127.0.0.1:5000"


def read_table(run_id: str, path: str = "comparison_table.json") -> dict[str, list]:
    """A table logged with `log_table`, as column -> values."""
    local = mlflow.MlflowClient().download_artifacts(run_id, path)
    with open(local) as f:
        split = json.load(f)
    return {c: [row[i] for row in split["data"]] for i, c in enumerate(split["columns"])}


# --- the comparison's parent run ------------------------------------------------------------------------------------


@requires_data("sst2")
def test_comparison_parent_carries_its_table_as_note_and_logged_table(tmp_path, tiny_mlm_dir):
    folder, verbalizer = tiny_mlm_dir
    cfg = CompareConfig(task="sst2", methods=["finetune", "icl"], model=str(folder), shots=4, seeds=[13, 21],
                        overrides={"train.max_steps": 2, "train.eval_every": 2, "eval.limit": 16,
                                   "prompt.template_id": 1, "prompt.verbalizer": str(verbalizer),
                                   "tracking.progress": False},
                        storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    result = compare(cfg, log=lambda s: None)
    client = mlflow.MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["kind"] == "comparison" and parent.data.tags["compare"] == "true"
    note = parent.data.tags[NOTE_TAG]
    assert result.table() in note and "| finetune |" in note and "| icl |" in note
    assert {"comparison_table.json", "comparison.md", "comparison.json"} <= {
        a.path for a in client.list_artifacts(result.parent_run_id)}
    table = read_table(result.parent_run_id)
    assert table["method"] == ["finetune", "icl"]
    assert table["accuracy_mean"] == pytest.approx([r.mean for r in result.rows])
    assert table["diff_vs_finetune"][0] is None
    assert table["diff_vs_finetune"][1] == pytest.approx(result.rows[1].difference.mean)
    assert table["run_ids"] == [",".join(r.run_ids) for r in result.rows]
    assert {"path": "comparison_table.json", "type": "table"} in json.loads(parent.data.tags["mlflow.loggedArtifacts"])
    children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 4 and {r.data.tags.get("kind") for r in children} == {"run"}

    # the dashboard's link: the compare view of exactly these nested runs
    links = dashboard_links(None, BASE)
    assert links.comparison == parent.info.run_name and links.runs == 4
    query = unquote(links.compare_url.split("#/compare-runs?", 1)[1])
    runs, experiments = (json.loads(part.split("=", 1)[1]) for part in query.split("&"))
    assert sorted(runs) == sorted(r.info.run_id for r in children)
    assert experiments == [parent.info.experiment_id]
    assert links.parent_url == f"{BASE}/#/experiments/{parent.info.experiment_id}/runs/{result.parent_run_id}"
    assert links.experiment_url == f"{BASE}/#/experiments/{parent.info.experiment_id}/runs?viewStateShareKey=" \
                                   f"{RUNS_VIEW_KEY}"
    # the experiment's saved comparison view: these runs, charted up to test accuracy; what --open opens
    view = json.loads(client.get_experiment(parent.info.experiment_id).tags[VIEW_TAG_PREFIX + COMPARISON_VIEW_KEY])
    assert view["searchFilter"] == f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    parallel, scatter, bar = view["compareRunCharts"]
    assert parallel["selectedParams"] == ["method.name", "train.lr"]
    assert parallel["selectedMetrics"] == ["test/accuracy"]
    assert (scatter["xaxis"]["key"], scatter["yaxis"]["key"], bar["metricKey"]) == (
        "trainable_fraction", "test/accuracy", "test/accuracy")
    assert links.charts_url == f"{BASE}/#/experiments/{parent.info.experiment_id}/runs?viewStateShareKey=" \
                               f"{COMPARISON_VIEW_KEY}&compareRunsMode=CHART"
    assert links.primary == links.charts_url


# --- the experiment's description -----------------------------------------------------------------------------------


def _experiment_tags(name: str) -> dict:
    return mlflow.MlflowClient().get_experiment_by_name(name).tags


def test_experiment_description_is_set_once_and_never_over_a_users_own(monkeypatch):
    with RunTracker("exp", "first"):
        pass
    tags = _experiment_tags("exp")
    assert tags[NOTE_TAG] == EXPERIMENT_GUIDE and GUIDE_MARKER in EXPERIMENT_GUIDE
    for text in ("tags.kind = 'run'", "tags.kind = 'comparison'", "test/accuracy", "test/rows", "eval/accuracy",
                 "trainable_fraction", "train/seconds", "method.name", "train.lr", "parallel-coordinates"):
        assert text in EXPERIMENT_GUIDE
    assert json.loads(tags[VIEW_TAG_PREFIX + RUNS_VIEW_KEY]) == runs_view_state()

    writes = []
    real = mlflow.MlflowClient.set_experiment_tag
    monkeypatch.setattr(mlflow.MlflowClient, "set_experiment_tag",
                        lambda self, *a, **k: writes.append(a) or real(self, *a, **k))
    with RunTracker("exp", "second"):
        pass
    assert writes == []  # there already, unchanged: not written again

    exp_id = mlflow.MlflowClient().get_experiment_by_name("exp").experiment_id
    mlflow.MlflowClient().set_experiment_tag(exp_id, NOTE_TAG, "an older text of ours\n\n" + GUIDE_MARKER)
    with RunTracker("exp", "third"):
        pass
    assert _experiment_tags("exp")[NOTE_TAG] == EXPERIMENT_GUIDE  # ours, outdated: brought up to date

    mlflow.MlflowClient().set_experiment_tag(exp_id, NOTE_TAG, "My own notes: SST-2 at k=16.")
    with RunTracker("exp", "fourth"):
        pass
    assert _experiment_tags("exp")[NOTE_TAG] == "My own notes: SST-2 at k=16."


def test_run_note_and_table_replace_or_append():
    with RunTracker("exp", "r") as run:
        run.set_note("| a |\n|---|\n| 1 |")
        run.log_table({"a": [1, 2], "b": ["x", "y"]}, "t.json")
        run.log_table({"a": [3], "b": ["z"]}, "t.json", replace=False)  # MLflow's own behaviour: appended
        assert read_table(run.run_id, "t.json") == {"a": [1, 2, 3], "b": ["x", "y", "z"]}
        run.log_table({"a": [4], "b": ["w"]}, "t.json")  # the default: this table in its place
        assert read_table(run.run_id, "t.json") == {"a": [4], "b": ["w"]}
        run.set_note("x\n" * 6000)  # over MLflow's 8,000 characters for a tag: cut at a line end, and says so
    note = mlflow.MlflowClient().get_run(run.run_id).data.tags[NOTE_TAG]
    assert len(note) <= 8000 and "cut here" in note and note.startswith("x\nx\n")


# --- the sweep's parent run -----------------------------------------------------------------------------------------


def test_sweep_parent_has_kind_and_a_table_of_trials(tmp_path):
    from workbench.config import Float, SearchSpace
    from workbench.sweeps import StudySpec, TrialOutcome, run_study

    uri = resolve_tracking_uri(None)

    def objective(params, trial):
        with RunTracker("toy", f"t{trial.number}", uri, nested=True) as run:
            trial.started(run.run_id)
        return TrialOutcome(0.5 + trial.number / 10, run.run_id)

    spec = StudySpec(name="toy", space=SearchSpace({"train.lr": Float(1e-3, 1e-1, log=True)}), protocol={},
                     fixed={}, experiment="toy", tracking_uri=uri, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                     trials=3, pruner="none")
    result = run_study(spec, objective, log=lambda s: None)
    parent = mlflow.MlflowClient().get_run(result.parent_run_id)
    assert parent.data.tags["kind"] == "sweep"
    table = read_table(result.parent_run_id)  # rewritten after each trial, not appended to
    assert table["number"] == [0, 1, 2] and table["state"] == ["COMPLETE"] * 3
    assert table["dev_accuracy"] == pytest.approx([0.5, 0.6, 0.7])
    assert len(table["train.lr"]) == 3 and all(table["mlflow_run_id"])
    note = parent.data.tags[NOTE_TAG]
    assert "3 of 3 trials finished" in note and "Best: trial 2, dev accuracy 0.7000" in note
    assert "| number | state | dev_accuracy | train.lr | mlflow_run_id |" in note
    assert all(run_id in note for run_id in table["mlflow_run_id"])


# --- the links the dashboard prints ---------------------------------------------------------------------------------


def _run(client, exp_id: str, start: int, name: str, **tags) -> str:
    return client.create_run(exp_id, start_time=start, run_name=name, tags=tags).info.run_id


def test_compare_url_of_the_latest_comparison_in_a_store():
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("sst2")
    other = client.create_experiment("trec")
    old = _run(client, exp_id, 1000, "compare-old", compare="true")  # logged before the kind tag
    for i in range(2):
        _run(client, exp_id, 1001 + i, f"old-{i}", **{"mlflow.parentRunId": old})
    new = _run(client, other, 2000, "compare-new", kind="comparison", compare="true")
    kids = [_run(client, other, 2001 + i, f"new-{i}", kind="run", **{"mlflow.parentRunId": new}) for i in range(3)]
    _run(client, exp_id, 3000, "a later single run", kind="run")
    _run(client, exp_id, 3001, "a later sweep", kind="sweep")

    links = dashboard_links(None, BASE)
    assert links.comparison == "compare-new" and links.runs == 3
    assert links.compare_url == (f"{BASE}/#/compare-runs?runs=%5B%22{kids[0]}%22,%22{kids[1]}%22,%22{kids[2]}%22%5D"
                                 f"&experiments=%5B%22{other}%22%5D")
    assert compare_url(BASE, kids, [other]) == links.compare_url
    assert links.experiment_url == f"{BASE}/#/experiments/{other}/runs"  # no saved view: no workbench run opened it
    assert links.charts_url is None and links.primary == links.compare_url  # no charts view saved for it
    assert any(links.compare_url in line for line in links.lines())

    client.delete_run(new)  # a deleted comparison does not count: the older one, found by compare=true
    links = dashboard_links(None, BASE)
    assert links.comparison == "compare-old" and links.runs == 2 and f'%5B%22{exp_id}%22%5D' in links.compare_url


def test_no_comparison_yet_says_so_and_gives_the_experiment():
    assert dashboard_links(None, BASE).experiment_url.startswith(BASE)  # an empty store: the UI's home
    with RunTracker("sst2", "a single run", tags={"kind": "run"}):
        pass
    links = dashboard_links(None, BASE)
    exp_id = mlflow.MlflowClient().get_experiment_by_name("sst2").experiment_id
    assert links.compare_url is None and links.primary == links.experiment_url
    assert links.experiment_url == f"{BASE}/#/experiments/{exp_id}/runs?viewStateShareKey={RUNS_VIEW_KEY}"
    assert links.lines()[0].startswith("no comparison in this store yet")


def test_base_url_reaches_a_wildcard_host_on_this_machine():
    assert base_url("0.0.0.0", 5001) == "http://127.0.0.1:5001"
    assert base_url("::", 5001) == "http://[::1]:5001"
    assert base_url("localhost", 80) == "http://localhost:80"


def test_dashboard_prints_the_links_once_the_ui_answers_and_opens_them(monkeypatch, capsys):
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("sst2")
    parent = _run(client, exp_id, 1000, "compare-x", kind="comparison")
    kid = _run(client, exp_id, 1001, "x-0", **{"mlflow.parentRunId": parent})
    opened = []

    def fake_serve(uri, host, port, on_ready=None, **kw):  # the UI "answers" at once; no server is started
        on_ready(base_url(host, port), resolve_tracking_uri(uri))
        return 0

    monkeypatch.setattr(dashboard, "serve", fake_serve)
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    main(["dashboard", "--port", "5123", "--open"])
    out = capsys.readouterr().out
    url = f"http://127.0.0.1:5123/#/compare-runs?runs=%5B%22{kid}%22%5D&experiments=%5B%22{exp_id}%22%5D"
    assert "latest comparison compare-x (1 nested run)" in out and url in out and opened == [url]


def test_wait_until_ready_polls_health():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert wait_until_ready(None, f"http://127.0.0.1:{server.server_port}", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert not wait_until_ready(None, f"http://127.0.0.1:{server.server_port}", timeout=0.5)
