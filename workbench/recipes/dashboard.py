"""`workbench dashboard`: MLflow's UI on 127.0.0.1 against the workbench's tracking store.

`mlflow ui` runs in a process group of its own (it starts workers of its own), and the whole group is stopped
when the dashboard stops: Ctrl-C, SIGTERM, SIGHUP, or any exit. A store URI with a password is handed to the
UI through its environment, not its command line (which any local user can read), and is printed redacted.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time

from workbench.errors import WorkbenchError
from workbench.tracking import check_tracking_uri, redact_url, resolve_tracking_uri
from workbench.tracking.uris import has_secret

STOP_GRACE_S = 10.0  # after SIGTERM, the UI's group gets this long before SIGKILL
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
          warn=None) -> int:
    """Run the UI in the foreground until it exits or the dashboard is stopped (Ctrl-C, SIGTERM, SIGHUP); returns
    its exit status (0 when stopped). Every check comes first, in one line each: port, host, the store."""
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


__all__ = ["dashboard_command", "dashboard_env", "is_loopback", "no_auth_warning", "serve"]
