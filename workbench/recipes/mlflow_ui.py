"""`workbench dashboard`: MLflow's UI on 127.0.0.1 against the workbench's tracking store.

`mlflow ui` runs in a process group of its own (it starts workers of its own), and the whole group is stopped
when the dashboard stops: Ctrl-C, SIGTERM, SIGHUP, or any exit. A store URI with a password is handed to the
UI through its environment, not its command line (which any local user can read), and is printed redacted.

Once the UI answers, the dashboard prints where to look (`dashboard_links`): for the latest comparison (the newest
parent run tagged `kind=comparison`, or `compare=true` for older ones), MLflow's compare view of its nested runs, its
charts (the experiment's saved view `workbench-comparison`, written by `workbench compare`), its parent run (the
table as its description); and the experiment's runs table (the saved view `workbench-runs`).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.tracking import check_tracking_uri, redact_url, resolve_tracking_uri
from workbench.tracking.uris import has_secret

STOP_GRACE_S = 10.0  # after SIGTERM, the UI's group gets this long before SIGKILL
READY_TIMEOUT_S = 180.0  # how long the UI may take to answer before the links are given up (it keeps running)
BACKEND_ENV = "MLFLOW_BACKEND_STORE_URI"  # `mlflow ui --backend-store-uri` reads it


def _check_port(port) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise WorkbenchError(f"--port {port}: not a port number; expected an integer from 1 to 65535")
    return port


def _check_host(host: str) -> list[str]:
    """The addresses `host` stands for; one line when it is not a host name or address of this machine."""
    if not isinstance(host, str) or not host.strip() or host != host.strip():
        raise WorkbenchError(f"--host {host!r}: expected a host name or an IP address, e.g. 127.0.0.1")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise WorkbenchError(f"--host {host!r}: not a known host name or IP address ({e})") from None
    return sorted({info[4][0] for info in infos})


def is_loopback(host: str) -> bool:
    """Whether the UI would only be reachable from this machine."""
    try:
        addresses = _check_host(host)
    except WorkbenchError:
        return False
    try:
        return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            why = "is in use (another dashboard?)" if e.errno in (98, 48) else f"cannot be used: {e.strerror or e}"
            raise WorkbenchError(f"--port {port}: {host}:{port} {why}; choose another with --port") from None


def dashboard_command(tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000,
                      workers: int = 1) -> list[str]:
    """The `mlflow ui` command line. A URI with a password is left out: `serve` passes it in the environment."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://", "databricks")):
        raise WorkbenchError(f"tracking URI {redact_url(uri)!r} is a tracking server already: open it in a browser")
    _check_port(port)
    store = [] if has_secret(uri) else ["--backend-store-uri", uri]
    return [sys.executable, "-m", "mlflow", "ui", *store, "--host", host, "--port", str(port),
            "--workers", str(workers)]


def dashboard_env(tracking_uri: str | None = None) -> dict[str, str]:
    """The environment of the `mlflow ui` process: the store URI in MLFLOW_BACKEND_STORE_URI."""
    return {**os.environ, BACKEND_ENV: resolve_tracking_uri(tracking_uri)}


def no_auth_warning(host: str, port: int) -> str:
    return (f"warning: --host {host} makes the dashboard reachable from other machines, and MLflow's UI has no "
            f"authentication: anyone who reaches {host}:{port} can read, change and delete every run")


def _stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to the UI's whole process group, then SIGKILL to what is left of it after `grace` seconds."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group's id
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # collect the leader, so that it does not count as alive
        if not _group_alive(pgid):
            break
        time.sleep(0.1)
    else:
        _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    if pgid <= 1:  # 0 would be our own group, 1 init's
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve(tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000, log=print,
          warn=None, on_ready=None) -> int:
    """Run the UI in the foreground until it exits or the dashboard is stopped (Ctrl-C, SIGTERM, SIGHUP); returns
    its exit status (0 when stopped). Every check comes first, in one line each: port, host, the store.
    `on_ready(base_url, uri)` is called once the UI answers (an error in it is a warning; the UI goes on)."""
    warn = warn or (lambda s: print(s, file=sys.stderr, flush=True))
    cmd = dashboard_command(tracking_uri, host, port)
    _check_host(host)
    uri = check_tracking_uri(tracking_uri)
    _check_port_free(host, port)
    if not is_loopback(host):
        warn(no_auth_warning(host, port))
    log(f"MLflow UI for {redact_url(uri)} on http://{host}:{port} (Ctrl-C stops it)")

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # before the UI starts: no moment without them
        try:
            previous[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread: the caller stops us, and `finally` stops the UI
            break
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=dashboard_env(uri), start_new_session=True)  # its own process group
        if on_ready is not None:
            base = base_url(host, port)
            if wait_until_ready(proc, base):
                try:
                    on_ready(base, uri)
                except Exception as e:  # the links are a convenience: the UI itself is up
                    warn(f"warning: could not look up the latest comparison: {redact_url(str(e))[:300]}")
            elif proc.poll() is None:
                warn(f"warning: the UI did not answer on {base} within {READY_TIMEOUT_S:.0f} s; it keeps starting")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in previous:  # a second Ctrl-C must not cut the stopping short and leave the UI running
            signal.signal(sig, lambda signum, frame: None)
        if proc is not None and (proc.poll() is None or _group_alive(proc.pid)):
            _stop_group(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _group_alive(pgid: int) -> bool:
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# --- where to look, once the UI answers ------------------------------------------------------------------------------


def base_url(host: str, port: int) -> str:
    """The UI's address as a browser on this machine reaches it (a wildcard address means this machine)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def wait_until_ready(proc: subprocess.Popen | None, base: str, timeout: float = READY_TIMEOUT_S) -> bool:
    """Poll the UI's /health until it answers (True), the UI exits or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the UI is local: never via a proxy
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with opener.open(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.3)
    return False


@dataclass
class DashboardLinks:
    """Where the UI shows a store's results: the latest comparison's compare view and parent run, the experiment."""

    experiment_url: str  # the experiment's runs table (our saved view when it has one); the UI's home if none
    experiment: str | None = None  # its name
    comparison: str | None = None  # the latest comparison's parent run name
    parent_url: str | None = None  # its run page: the table as its description
    compare_url: str | None = None  # MLflow's compare view of its nested runs
    charts_url: str | None = None  # the experiment's saved comparison view, in chart mode, when it shows this one
    runs: int = 0  # how many nested runs

    @property
    def primary(self) -> str:
        """What --open opens: the comparison's charts (they end at test accuracy), else its compare view (whose
        default plot MLflow picks: the first metric the runs logged), else the experiment."""
        return self.charts_url or self.compare_url or self.experiment_url

    def lines(self) -> list[str]:
        if self.comparison is None:
            out = ["no comparison in this store yet (`workbench compare` makes one)"]
        elif self.compare_url is None:
            out = [f"latest comparison {self.comparison} has no nested runs (did it stop early?)",
                   f"  its run: {self.parent_url}"]
        else:
            out = [f"latest comparison {self.comparison} ({self.runs} nested run{'' if self.runs == 1 else 's'})",
                   f"  compare view: {self.compare_url}",
                   *([f"  charts:       {self.charts_url}"] if self.charts_url else []),
                   f"  its table:    {self.parent_url}"]
        where = f"experiment {self.experiment}" if self.experiment else "experiments"
        return out + [f"{where} (single runs, test accuracy first): {self.experiment_url}"]


def _all_experiment_ids(client) -> list[str]:
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def latest_comparison(client, experiment_ids: list[str]):
    """The newest parent run of a comparison (tag kind=comparison; compare=true for those logged before the kind
    tag), or None."""
    found = []
    for filt in ("tags.kind = 'comparison'", "tags.compare = 'true'"):
        found += client.search_runs(experiment_ids, filt, order_by=["attributes.start_time DESC"], max_results=1)
    return max(found, key=lambda r: r.info.start_time, default=None)


def dashboard_links(tracking_uri: str | None, base: str) -> DashboardLinks:
    """The links `workbench dashboard` prints, read from the store (the UI need not be running)."""
    import mlflow

    from workbench.tracking.guide import (COMPARISON_VIEW_KEY, RUNS_VIEW_KEY, VIEW_TAG_PREFIX, charts_url,
                                          compare_url, experiment_url, run_url)

    client = mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))
    ids = _all_experiment_ids(client)
    parent = latest_comparison(client, ids) if ids else None
    if parent is not None:
        exp = client.get_experiment(parent.info.experiment_id)
    else:  # the experiment with the newest change, the default one (id 0) only when there is no other
        newest = client.search_experiments(order_by=["last_update_time DESC"], max_results=2)
        exp = next((e for e in newest if e.experiment_id != "0"), newest[0] if newest else None)
    if exp is None:
        return DashboardLinks(f"{base.rstrip('/')}/#/experiments")
    links = DashboardLinks(experiment_url(base, exp.experiment_id,
                                          view=VIEW_TAG_PREFIX + RUNS_VIEW_KEY in (exp.tags or {})), exp.name)
    if parent is None:
        return links
    links.comparison = parent.info.run_name or parent.info.run_id
    links.parent_url = run_url(base, exp.experiment_id, parent.info.run_id)
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"], max_results=1000)
    view = (exp.tags or {}).get(VIEW_TAG_PREFIX + COMPARISON_VIEW_KEY, "")
    if f"'{parent.info.run_id}'" in view:
        links.charts_url = charts_url(base, exp.experiment_id)
    if children:
        links.runs = len(children)
        links.compare_url = compare_url(base, [r.info.run_id for r in children],
                                        sorted({r.info.experiment_id for r in children}))
    return links


def print_links(tracking_uri: str | None, base: str, open_browser: bool = False, log=print) -> DashboardLinks:
    """Print where to look; `open_browser`: open `links.primary` in the default browser."""
    links = dashboard_links(tracking_uri, base)
    for line in links.lines():
        log(line)
    if open_browser:
        import webbrowser

        if not webbrowser.open(links.primary):
            log("no browser could be opened here; open the link above")
    return links


__all__ = ["DashboardLinks", "base_url", "dashboard_command", "dashboard_env", "dashboard_links", "is_loopback",
           "latest_comparison", "no_auth_warning", "print_links", "serve", "wait_until_ready"]
