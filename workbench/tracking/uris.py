"""Store URLs (MLflow tracking URIs, Optuna storages): secrets kept out of every message and log, and the quick
checks that refuse a URL before anything is started.

`redact_url` is the one redaction helper of the package: the tracking layer applies it to every param, tag, text
and dict it logs, and to every message that names a URL; the sweeps reuse it for the Optuna storage.
`preflight` refuses, in one line and in a few seconds at most, a URL that cannot work: a malformed or unknown
scheme, a SQLite or file store in a folder that does not exist (MLflow would create it silently), a server
(HTTP, PostgreSQL, MySQL, SQL Server) that does not accept a TCP connection.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

REACH_TIMEOUT_S = 3.0  # a TCP connect to a store's server; a live one answers in milliseconds
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
KNOWN_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                 "databricks-uc", "uc")

# scheme://user:password@  ->  scheme://user:***@   (the password may hold anything but whitespace, quotes and @)
_USERINFO = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@\"'<>]*):(?P<pw>[^\s@\"'<>]*)@")
# ?password=...&  (SQLAlchemy and libpq accept the password as a query parameter too)
_QUERY = re.compile(r"(?P<pre>[?&;](?:password|passwd|pwd|secret|token|access_token|api_key|apikey|sslpassword)=)"
                    r"(?P<value>[^&;\s\"'<>#]*)", re.IGNORECASE)


def redact_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (`postgresql://user:***@host/db`); works on a
    URL or on any text that holds URLs (an error message, a YAML dump)."""
    if not isinstance(text, str) or ("@" not in text and "=" not in text):
        return text
    text = _USERINFO.sub(lambda m: f"{m['pre']}:***@", text)
    return _QUERY.sub(lambda m: f"{m['pre']}***", text)


def redact_value(value: Any) -> Any:
    """`redact_url` applied to every string inside dicts, lists and tuples (keys included)."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def has_secret(text: str) -> bool:
    return isinstance(text, str) and redact_url(text) != text


RUN_LINKS_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # MLflow's own switch, read each time a run ends


def hide_run_links(uri: str) -> None:
    """Ending a run on an HTTP store, MLflow prints "View run NAME at: URL" to stdout, the URL built from the
    store's URI with its user and password in it. For a URI that carries a secret its own switch turns these links
    off for the rest of the process (the run id is printed by the workbench anyway); other URIs keep them."""
    if has_secret(uri):
        os.environ[RUN_LINKS_ENV] = "true"


def _tracking_schemes() -> set[str]:
    try:  # MLflow's own registry knows plugins too
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        return set(_tracking_store_registry._registry)
    except Exception:
        return set(KNOWN_SCHEMES)


def _proxied(scheme: str, host: str) -> bool:
    """A proxy would carry the request: a direct TCP connect says nothing about the server then."""
    proxies = urllib.request.getproxies()
    if scheme not in proxies:
        return False
    try:
        return not urllib.request.proxy_bypass(host)
    except Exception:
        return True


def reach(scheme: str, host: str, port: int | None, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """None when (host, port) accepts a TCP connection within `timeout`, else why not, in a few words."""
    port = port or DEFAULT_PORTS.get(scheme)
    if not host or not port:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"unknown host {host!r}"
    except ConnectionRefusedError:
        return f"{host}:{port} refused the connection (is the server running?)"
    except TimeoutError:
        return f"{host}:{port} did not answer within {timeout:g} s"
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"


def _sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL ('' for an in-memory database); None for a malformed one."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        return ""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///"):].split("?", 1)[0]


def check_local_file(path: str, what: str) -> str | None:
    """Why a store file at `path` cannot be created or used, or None."""
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        return f"{p} is a folder, not a {what} file"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        return f"folder {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not p.exists() and not os.access(parent, os.W_OK | os.X_OK):
        return f"folder {parent} is not writable"
    if what == "SQLite" and p.is_file():
        try:
            with open(p, "rb") as f:
                head = f.read(16)
        except OSError as e:
            return f"{p}: {e.strerror or e}"
        if head and head != b"SQLite format 3\x00":  # an empty file is an empty database
            return f"{p} is not a SQLite database"
    return None


def tracking_uri_problem(uri: str) -> str | None:
    """Why the MLflow tracking URI cannot work (without touching the store's contents), or None."""
    if not uri or uri != uri.strip():
        return "empty" if not uri.strip() else "has leading or trailing spaces"
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if "://" not in uri and re.match(r"(?i)(https?|sqlite|postgres(ql)?|mysql|mssql)[:/]", uri):
        return "malformed URI; expected scheme://..., e.g. http://host:5000 or sqlite:///mlflow.db"
    if len(scheme) == 1:  # a Windows drive letter: a local path
        scheme = ""
    base = scheme.split("+", 1)[0]
    if scheme and base not in _tracking_schemes() and scheme not in _tracking_schemes():
        known = ", ".join(sorted(s for s in _tracking_schemes() if s))
        return f"unsupported scheme {scheme!r}; expected one of {known} (or a local folder)"
    if base == "sqlite":
        path = _sqlite_path(uri)
        if path is None:
            return "malformed SQLite URL; expected sqlite:///relative/file.db or sqlite:////absolute/file.db"
        return check_local_file(path, "SQLite") if path else None
    if base in ("http", "https"):
        if not parsed.hostname:
            return f"malformed URI; expected {base}://host[:port]"
        try:
            port = parsed.port
        except ValueError:
            return "malformed port"
        return None if _proxied(base, parsed.hostname) else reach(base, parsed.hostname, port)
    if base in ("postgresql", "postgres", "mysql", "mssql"):
        try:
            port = parsed.port
        except ValueError:
            return "malformed port"
        return reach(base, parsed.hostname or "", port)
    if base in ("", "file"):
        path = urllib.parse.unquote(parsed.path) if base == "file" else uri
        p = Path(os.path.expanduser(path))
        parent = p.parent if str(p.parent) else Path(".")
        if not p.exists() and not parent.is_dir():
            return f"folder {parent} does not exist"
    return None


def storage_problem(url: str) -> str | None:
    """Why the Optuna (SQLAlchemy) storage URL cannot work, or None: malformed, an unknown database, a SQLite file
    in a missing folder, a server that does not accept a TCP connection."""
    if not url or url != url.strip():
        return "empty" if not url.strip() else "has leading or trailing spaces"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "malformed URL; expected e.g. sqlite:///optuna.db or postgresql://user:password@host/db"
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        return f"unknown database {parsed.drivername!r}; expected e.g. sqlite, postgresql or mysql"
    except ImportError:
        pass  # a missing driver is reported when the storage is opened, with the pip command
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(url) if url.startswith("sqlite:///") or url == "sqlite://" else parsed.database
        if path is None:
            return "malformed SQLite URL; expected sqlite:///relative/file.db or sqlite:////absolute/file.db"
        return check_local_file(path, "SQLite") if path and path != ":memory:" else None
    return reach(backend, parsed.host or "", parsed.port)


def preflight(uri: str) -> None:
    """Raise one line when the tracking URI cannot work; quick (at most a few seconds), no side effects."""
    problem = tracking_uri_problem(uri)
    if problem:
        raise WorkbenchError(f"cannot use MLflow tracking URI {redact_url(uri)!r}: {problem}")


__all__ = ["check_local_file", "has_secret", "preflight", "reach", "redact_url", "redact_value", "storage_problem",
           "tracking_uri_problem"]
