"""MLflow tracking: the run lifecycle (one `RunTracker` per run), the tracking URI, and run lookup."""

from workbench.tracking.runs import (DEFAULT_TRACKING_URI, RunTracker, check_tracking_uri, environment_tags,
                                     find_matching_run, flatten_params, resolve_tracking_uri, sqlite_lock)

__all__ = ["DEFAULT_TRACKING_URI", "RunTracker", "check_tracking_uri", "environment_tags", "find_matching_run",
           "flatten_params", "resolve_tracking_uri", "sqlite_lock"]
