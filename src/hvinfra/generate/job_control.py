"""Finding and stopping a generation job's processes inside its container.

Every job runs with `HVINFRA_JOB_ID=<id>` in its environment, which all its processes inherit,
even children that ignore SIGINT, start their own process group or session, or are reparented
to the container's init. A tiny `sh` wrapper also records the job's pid and the host process
that owns it (`hostname pid`) in `/tmp/hvinfra-job-<id>.pid`. Stopping signals the pid tree and
every marked process, waits a grace period, SIGKILLs what is left and lists the container's
processes again to prove nothing of the job survived.

Never imports docker, rich or typer: the engine is a protocol.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hvinfra.errors import ContainerStateError, HvinfraError
from hvinfra.records import ExecResult

JOB_ENV = "HVINFRA_JOB_ID"
PIDFILE_DIR = "/tmp"
# `sh -c WRAPPER hvinfra-job PIDFILE OWNER ARGV…`: record the pid and owner, then become the job.
PID_WRAPPER = 'echo "$$ $2" > "$1"; shift 2; exec "$@"'
# `sh -c LIST_JOBS hvinfra-jobs`: "PID JOB_ID" for every process carrying the job marker, and
# "FILE JOB_ID PID HOST HOSTPID" for every pid file (found through /proc and plain sh, so it
# works with busybox and with the official Ubuntu-based images alike).
LIST_JOBS = r"""
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  id=$(tr '\0' '\n' < "$d/environ" 2>/dev/null | sed -n 's/^HVINFRA_JOB_ID=//p' | head -n 1)
  [ -n "$id" ] && echo "PROC $p $id"
done
for f in /tmp/hvinfra-job-*.pid; do
  [ -f "$f" ] || continue
  id=${f#/tmp/hvinfra-job-}; id=${id%.pid}
  echo "FILE $id $(head -n 1 "$f")"
done
exit 0
"""
# `sh -c SIGNAL_JOB hvinfra-stop JOB_ID SIGNAL`: signal the job's pid tree and marked processes.
SIGNAL_JOB = r"""
id=$1; sig=$2; pids=
tree() {
  echo "$1"
  for s in /proc/[0-9]*/status; do
    p=${s#/proc/}; p=${p%/status}
    while read -r k v; do
      if [ "$k" = PPid: ]; then [ "$v" = "$1" ] && tree "$p"; break; fi
    done 2>/dev/null < "$s"
  done
}
read -r root _ < "/tmp/hvinfra-job-$id.pid" 2>/dev/null && pids=$(tree "$root")
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "HVINFRA_JOB_ID=$id" && pids="$pids $p"
done
[ -z "$pids" ] || kill -"$sig" $pids 2>/dev/null
exit 0
"""


class ExecEngine(Protocol):
    def exec_run(self, container_id: str, argv: Sequence[str]) -> ExecResult: ...
    def exec_inspect(self, exec_id: str) -> dict[str, Any]: ...


class Notes(Protocol):
    def note(self, text: str) -> None: ...


def pidfile_of(job_id: str) -> str:
    return f"{PIDFILE_DIR}/hvinfra-job-{job_id}.pid"


def owner_tag() -> str:
    """Who runs the job: this host and process, written into the pid file."""
    return f"{socket.gethostname()} {os.getpid()}"


def wrap(job_id: str, argv: Sequence[str]) -> list[str]:
    return ["/bin/sh", "-c", PID_WRAPPER, "hvinfra-job", pidfile_of(job_id), owner_tag(), *argv]


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    pids: tuple[int, ...]
    owner_host: str = ""
    owner_pid: int | None = None

    @property
    def orphaned(self) -> bool:
        """True when the hvinfra process that started it is gone (or cannot be told)."""
        if self.owner_pid is None or self.owner_host != socket.gethostname():
            return self.owner_pid is None
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def running_jobs(engine: ExecEngine, container_id: str) -> list[RunningJob]:
    """The hvinfra jobs with live processes in the container, oldest id first."""
    result = engine.exec_run(container_id, ["/bin/sh", "-c", LIST_JOBS, "hvinfra-jobs"])
    pids: dict[str, list[int]] = {}
    owners: dict[str, tuple[str, int | None]] = {}
    for line in result.output.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "PROC" and fields[1].isdigit():
            pids.setdefault(fields[2], []).append(int(fields[1]))
        elif len(fields) >= 2 and fields[0] == "FILE":
            host = fields[3] if len(fields) > 3 else ""
            owner = int(fields[4]) if len(fields) > 4 and fields[4].isdigit() else None
            owners[fields[1]] = (host, owner)
    return [
        RunningJob(job_id, tuple(sorted(found)), *owners.get(job_id, ("", None)))
        for job_id, found in sorted(pids.items())
    ]


def job_pids(engine: ExecEngine, container_id: str, job_id: str) -> tuple[int, ...]:
    try:
        jobs = running_jobs(engine, container_id)
    except ContainerStateError:  # the container is gone or stopped: so are its processes
        return ()
    for job in jobs:
        if job.job_id == job_id:
            return job.pids
    return ()


def signal_job(engine: ExecEngine, container_id: str, job_id: str, sig: str) -> None:
    with contextlib.suppress(HvinfraError):
        engine.exec_run(container_id, ["/bin/sh", "-c", SIGNAL_JOB, "hvinfra-stop", job_id, sig])


@contextlib.contextmanager
def _escalate_on_interrupt() -> Iterator[list[bool]]:
    """While the kill runs, another Ctrl-C/SIGTERM/SIGHUP is noted, never aborts it."""
    pressed: list[bool] = []

    def _note(_signum: int, _frame: object) -> None:
        pressed.append(True)

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, _note)
    try:
        yield pressed
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _gone_within(engine: ExecEngine, container_id: str, job_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not job_pids(engine, container_id, job_id):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.3)


def stop_job(
    engine: ExecEngine,
    container_id: str,
    job_id: str,
    notes: Notes,
    *,
    grace: float,
    force: bool = False,
) -> str:
    """SIGINT to every process of the job, SIGKILL after `grace` seconds or at once on a second
    Ctrl-C (or with `force`); then verify by listing the container's processes. Returns what
    happened, for the user; raises ContainerStateError when processes survive even SIGKILL."""
    how = "stopped with SIGINT"
    if not force:
        notes.note(
            f"stopping the job inside the container (Ctrl-C again to kill it now; killed after"
            f" {grace:g}s)…"
        )
        try:
            signal_job(engine, container_id, job_id, "INT")
            if _gone_within(engine, container_id, job_id, grace):
                return how
        except KeyboardInterrupt:
            notes.note("second interrupt: killing the job now")
    with _escalate_on_interrupt():
        how = "killed with SIGKILL"
        for _ in range(3):
            signal_job(engine, container_id, job_id, "KILL")
            if _gone_within(engine, container_id, job_id, 5.0):
                return how
    left = job_pids(engine, container_id, job_id)
    raise ContainerStateError(
        f"the job's processes {', '.join(map(str, left))} survived SIGKILL in the container",
        "they may be in uninterruptible I/O; check `docker top`, or restart the container"
        " (`hvinfra down` / `hvinfra up`)",
    )


def refuse_or_kill_stale(
    engine: ExecEngine, container_id: str, container_name: str, notes: Notes, *, kill_stale: bool
) -> None:
    """Before a new job: a live job of another hvinfra is refused; an orphan (its hvinfra was
    killed) is refused too unless `kill_stale`, which kills it first."""
    for job in running_jobs(engine, container_id):
        if job.owner_pid == os.getpid() and job.owner_host == socket.gethostname():
            continue  # this hvinfra's own: `hvinfra batch` runs one job per GPU side by side
        pids = " ".join(map(str, job.pids))
        if not job.orphaned:
            raise ContainerStateError(
                f"container {container_name} is already running job {job.job_id} (processes"
                f" {pids}) for hvinfra pid {job.owner_pid} on {job.owner_host}; a second job"
                " would share its GPUs",
                "wait for it to finish, or stop it with Ctrl-C in its own terminal",
            )
        if not kill_stale:
            raise ContainerStateError(
                f"container {container_name} still runs job {job.job_id} (processes {pids}),"
                " left behind by an hvinfra that is gone (killed?); a second job would share"
                " its GPUs",
                "stop it with `--kill-stale` on this command, or restart the container",
            )
        notes.note(f"--kill-stale: stopping orphaned job {job.job_id} (processes {pids})")
        stop_job(engine, container_id, job.job_id, notes, grace=0, force=True)
        with contextlib.suppress(HvinfraError):
            engine.exec_run(container_id, ["rm", "-f", pidfile_of(job.job_id)])
