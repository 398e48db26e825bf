"""Which process owns a run, and whether it is still alive: how a run left RUNNING by a killed process is found.

Every MLflow run the workbench starts carries the tags `workbench.worker` (`host:pid`) and
`workbench.worker_scope` (the boot id and PID namespace that give the pid its meaning). A RUNNING run whose
worker is on this host, in this PID namespace, and gone (or whose host rebooted since) is an orphan: nobody will
ever end it. `reap_orphan_runs` marks such runs KILLED with an `error` tag. A worker on another machine, or in
another PID namespace (another container), cannot be judged from here and is left alone; a pid reused by an
unrelated process makes a dead worker look alive (the run is then left RUNNING, never wrongly ended).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

HOST = socket.gethostname()
WORKER_TAG = "workbench.worker"
SCOPE_TAG = "workbench.worker_scope"


def worker_id() -> str:
    """`host:pid` of this process (computed each time: a forked child has its own pid)."""
    return f"{HOST}:{os.getpid()}"


@functools.lru_cache(maxsize=1)
def worker_scope() -> str:
    """`<boot id>|<pid namespace>` of this process, '' where /proc does not say (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return f"{boot}|{ns}" if boot or ns else ""


def pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (killed, waiting for its parent to collect it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def worker_alive(worker: str, scope: str | None = None) -> bool | None:
    """True or False for a worker of this host (and, when `scope` is given, of this boot and PID namespace);
    None when it cannot be told from here."""
    host, _, pid = str(worker or "").rpartition(":")
    if host != HOST or not pid.isdigit():
        return None
    if scope:
        mine = worker_scope()
        if mine and scope != mine:
            boot, _, _ = scope.partition("|")
            my_boot, _, _ = mine.partition("|")
            if boot and my_boot and boot != my_boot:
                return False  # the machine rebooted since: every process it ran then is gone
            return None  # another PID namespace: its pids mean nothing here
    return pid_alive(int(pid))


def worker_tags() -> dict[str, str]:
    tags = {WORKER_TAG: worker_id()}
    if worker_scope():
        tags[SCOPE_TAG] = worker_scope()
    return tags


def reap_orphan_runs(client, experiment_ids: list[str], *, parent_run_id: str | None = None,
                     exclude: tuple[str, ...] = (), reason: str = "died during the run") -> list[str]:
    """Mark KILLED (with an `error` tag) the RUNNING runs of these experiments whose worker process on this host
    is gone; only children of `parent_run_id` when it is given. Returns their ids."""
    host = HOST.replace("'", "")
    filt = f"attributes.status = 'RUNNING' and tags.`{WORKER_TAG}` LIKE '{host}:%'"
    if parent_run_id:
        filt += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    reaped = []
    for run in client.search_runs(experiment_ids, filt, max_results=1000):
        run_id = run.info.run_id
        tags = run.data.tags
        if run_id in exclude or worker_alive(tags.get(WORKER_TAG, ""), tags.get(SCOPE_TAG)) is not False:
            continue
        try:
            client.set_tag(run_id, "error", f"worker {tags.get(WORKER_TAG)} {reason}")
            client.set_terminated(run_id, "KILLED")
        except Exception:  # another process ended it first, or the store is read-only
            continue
        reaped.append(run_id)
    return reaped


__all__ = ["HOST", "SCOPE_TAG", "WORKER_TAG", "pid_alive", "reap_orphan_runs", "worker_alive", "worker_id",
           "worker_scope", "worker_tags"]
