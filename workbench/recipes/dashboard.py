"""`workbench dashboard`: MLflow's UI on 127.0.0.1 against the workbench's tracking store."""

from __future__ import annotations

import subprocess
import sys

from workbench.errors import WorkbenchError
from workbench.tracking import check_tracking_uri, resolve_tracking_uri


def dashboard_command(tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000,
                      workers: int = 1) -> list[str]:
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://", "databricks")):
        raise WorkbenchError(f"tracking URI {uri!r} is a tracking server already: open it in a browser")
    if not 0 < port < 65536:
        raise WorkbenchError(f"--port {port}: not a port number")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", str(workers)]


def serve(tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000, log=print) -> int:
    """Run the UI in the foreground until Ctrl-C; returns its exit status."""
    cmd = dashboard_command(tracking_uri, host, port)
    check_tracking_uri(tracking_uri)
    log(f"MLflow UI for {resolve_tracking_uri(tracking_uri)} on http://{host}:{port} (Ctrl-C stops it)")
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


__all__ = ["dashboard_command", "serve"]
