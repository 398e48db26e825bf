"""MLflow tracking: the run lifecycle (one `RunTracker` per run), the tracking URI, run lookup, the redaction of
passwords in URLs (`redact_url`: everything logged or printed goes through it) and orphaned runs."""

from workbench.tracking.runs import (DEFAULT_TRACKING_URI, RunTracker, check_tracking_uri, describe_uri,
                                     environment_tags, find_matching_run, flatten_params, resolve_tracking_uri,
                                     sqlite_lock)
from workbench.tracking.uris import redact_url, redact_value, storage_problem
from workbench.tracking.workers import reap_orphan_runs, worker_alive, worker_id

__all__ = ["DEFAULT_TRACKING_URI", "RunTracker", "check_tracking_uri", "describe_uri", "environment_tags",
           "find_matching_run", "flatten_params", "reap_orphan_runs", "redact_url", "redact_value",
           "resolve_tracking_uri", "sqlite_lock", "storage_problem", "worker_alive", "worker_id"]
