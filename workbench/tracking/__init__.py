"""MLflow tracking: one run per training job, with everything needed to reproduce it."""

from workbench.tracking.mlflow_run import DEFAULT_TRACKING_URI, RunTracker, environment_tags, resolve_tracking_uri

__all__ = ["DEFAULT_TRACKING_URI", "RunTracker", "environment_tags", "resolve_tracking_uri"]
