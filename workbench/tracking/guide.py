"""What MLflow's UI shows of a workbench experiment before anyone clicks: the experiment's description (how to
tell single runs from comparison and sweep parents, which columns to add, what to plot), two saved views (the UI's
"shared views", experiment tags `mlflow.sharedViewState.<key>`): the single runs with those columns, and the latest
comparison's runs with charts ending at test accuracy, and the links `workbench dashboard` prints.

The description is the experiment tag `mlflow.note.content`, which the UI renders as markdown. It is written when
a workbench run opens the experiment and the experiment has no description yet, or has ours (recognised by its
last line, `GUIDE_MARKER`); a description someone wrote themselves is never overwritten.
"""

from __future__ import annotations

import json
from urllib.parse import quote

NOTE_TAG = "mlflow.note.content"  # a run's or an experiment's description, rendered as markdown by the UI
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # + key: a runs-table view the UI opens with ?viewStateShareKey=key
RUNS_VIEW_KEY = "workbench-runs"  # single runs, sorted by test accuracy, with the columns below
COMPARISON_VIEW_KEY = "workbench-comparison"  # the experiment's latest comparison: its runs and charts of them
# the kind tag: single training runs, comparison parents, sweep parents
RUN_KIND, COMPARISON_KIND, SWEEP_KIND = "run", "comparison", "sweep"

METRIC_COLUMNS = ("test/accuracy", "test/rows", "eval/accuracy", "trainable_fraction", "train/seconds")
PARAM_COLUMNS = ("method.name", "train.lr")

GUIDE_MARKER = ("_Written by Prompt Workbench, which keeps it up to date while this line is here: delete the line, "
                "or write a description of your own, and it is left alone._")

EXPERIMENT_GUIDE = f"""**Prompt Workbench experiment.** `workbench train` logs one run (tag `kind` = `run`); \
`workbench compare` logs a parent run (`kind` = `comparison`) with one nested run per method and seed, and its \
table as the parent's description and artifacts (`comparison.md`, `comparison_table.json`); `workbench sweep` logs \
a parent run (`kind` = `sweep`) with one nested run per trial and its table of trials.

- **Filter**: `tags.kind = 'run'` for single runs, `tags.kind = 'comparison'` for comparison parents, \
`tags.kind = 'sweep'` for sweep parents.
- **Columns** (the Columns button): metrics {", ".join(f"`{m}`" for m in METRIC_COLUMNS)}; \
params {", ".join(f"`{p}`" for p in PARAM_COLUMNS)}. `workbench dashboard` prints a link to this table with \
that filter and those columns.
- **Plot**: tick a comparison's nested runs and press Compare; in the compare view, a parallel-coordinates plot \
with params `method.name`, `train.lr` ending at the metric `test/accuracy`, or a scatter plot of `test/accuracy` \
against `trainable_fraction`. `workbench dashboard` prints the compare view of the latest comparison, and a \
link to these charts of it, ready-made.

{GUIDE_MARKER}
"""


def runs_view_state() -> dict:
    """The runs table as the UI's "share view" stores it: single runs, best test accuracy first, our columns."""
    columns = [f"metrics.`{m}`" for m in METRIC_COLUMNS] + [f"params.`{p}`" for p in PARAM_COLUMNS]
    return {"searchFilter": f"tags.kind = '{RUN_KIND}'", "orderByKey": "metrics.`test/accuracy`",
            "orderByAsc": False, "selectedColumns": columns}


def _chart(uuid: str, kind: str, section: str, name: str, **fields) -> dict:
    return {"uuid": uuid, "type": kind, "runsCountToCompare": 100, "metricSectionId": section, "deleted": False,
            "isGenerated": False, "displayName": name, **fields}


def comparison_view_state(parent_run_id: str) -> dict:
    """The runs of one comparison (its nested runs), best test accuracy first, and charts of them: a parallel
    coordinates plot of method and learning rate ending at test accuracy, test accuracy against trainable fraction,
    and test accuracy per run. The UI opens it in chart mode with `compareRunsMode=CHART`."""
    section = "workbench-comparison"
    return {**runs_view_state(), "searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'",
            "runsHiddenMode": "SHOW_ALL",
            "compareRunSections": [{"uuid": section, "name": "Comparison", "display": True, "isReordered": False,
                                    "deleted": False, "isGenerated": False}],
            "compareRunCharts": [
                _chart("workbench-parallel", "PARALLEL", section, "method, lr → test accuracy",
                       selectedParams=["method.name", "train.lr"], selectedMetrics=["test/accuracy"],
                       showAllRuns=True),
                _chart("workbench-scatter", "SCATTER", section, "test accuracy vs trainable fraction",
                       xaxis={"key": "trainable_fraction", "type": "METRIC"},
                       yaxis={"key": "test/accuracy", "type": "METRIC"}),
                _chart("workbench-bar", "BAR", section, "test accuracy", metricKey="test/accuracy"),
            ]}


def save_comparison_view(client, experiment_id: str, parent_run_id: str) -> bool:
    """Make the experiment's saved comparison view (one per experiment, `charts_url`) show this comparison. Best
    effort: False when the store refused it."""
    try:
        client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + COMPARISON_VIEW_KEY,
                                  json.dumps(comparison_view_state(parent_run_id)))
        return True
    except Exception:
        return False


def is_ours(note: str | None) -> bool:
    return bool(note) and GUIDE_MARKER in note


def describe_experiment(client, experiment) -> bool:
    """Give `experiment` (an MLflow Experiment, with its tags) our description and saved runs view, unless a
    person wrote its description; True when something was written. Best effort: never raises."""
    try:
        tags = dict(experiment.tags or {})
        note = tags.get(NOTE_TAG)
        wrote = False
        if (not note or not note.strip() or is_ours(note)) and note != EXPERIMENT_GUIDE:
            client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, EXPERIMENT_GUIDE)
            wrote = True
        view = json.dumps(runs_view_state())
        if tags.get(VIEW_TAG_PREFIX + RUNS_VIEW_KEY) != view:
            client.set_experiment_tag(experiment.experiment_id, VIEW_TAG_PREFIX + RUNS_VIEW_KEY, view)
            wrote = True
        return wrote
    except Exception:  # a read-only store, a server refusing tags: the run goes on without the description
        return False


# --- links into the UI (MLflow 3's hash routes) ---------------------------------------------------------------------


def _json_param(values: list[str]) -> str:
    """A list as the UI writes it in a URL (JSON, no spaces), percent-encoded so a terminal keeps it one link."""
    return quote(json.dumps([str(v) for v in values], separators=(",", ":")), safe=",")


def experiment_url(base: str, experiment_id: str, view: bool = True) -> str:
    """The experiment's runs table; `view`: opened on the saved view (single runs, our columns)."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{url}?viewStateShareKey={RUNS_VIEW_KEY}" if view else url


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def charts_url(base: str, experiment_id: str) -> str:
    """The experiment's saved comparison view (`save_comparison_view`) in chart mode."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={COMPARISON_VIEW_KEY}" \
           f"&compareRunsMode=CHART"


def compare_url(base: str, run_ids: list[str], experiment_ids: list[str]) -> str:
    """MLflow's compare view of these runs: `#/compare-runs?runs=[...]&experiments=[...]` (the UI's own
    `getCompareRunPageRoute`; it decodes the percent-encoding before reading the JSON)."""
    return f"{base.rstrip('/')}/#/compare-runs?runs={_json_param(run_ids)}&experiments={_json_param(experiment_ids)}"


__all__ = ["COMPARISON_KIND", "COMPARISON_VIEW_KEY", "EXPERIMENT_GUIDE", "GUIDE_MARKER", "NOTE_TAG", "RUNS_VIEW_KEY",
           "RUN_KIND", "SWEEP_KIND", "charts_url", "compare_url", "comparison_view_state", "describe_experiment",
           "experiment_url", "is_ours", "run_url", "runs_view_state", "save_comparison_view"]
