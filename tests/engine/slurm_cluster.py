"""A one-node Slurm cluster for tests: munged, slurmctld and slurmd on 127.0.0.1, all in one
temporary folder, run as foreground children of the test process and stopped by pid.

Plugins chosen to need nothing from the host: proctrack/linuxproc (no cgroups), task/none,
select/cons_tres (GPUs as a consumable gres), no accounting. The node's GPUs are stand-in
device nodes (character devices 195:N made with mknod, like /dev/nvidiaN, with no driver behind
them): Slurm only hands their indices to the job (SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES).
Clients find the cluster through SLURM_CONF (`env` gives it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "sacct")


class SlurmError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS[:5] if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlurmCluster:
    def __init__(self, root: Path, gpus: int = 2) -> None:
        self.root = root
        self.gpus = gpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "dev", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "munge").chmod(0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for index in range(self.gpus):
            device = root / "dev" / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o600 | 0o020000, os.makedev(195, index))  # S_IFCHR
        cpus = os.cpu_count() or 1
        (root / "plugstack.conf").write_text("")
        (root / "gres.conf").write_text(
            f"NodeName={self.node} Name=gpu File={root}/dev/nvidia[0-{self.gpus - 1}]\n"
        )
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=hvtest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={root}/state",
                    f"SlurmdSpoolDir={root}/spool",
                    f"SlurmctldPidFile={root}/slurmctld.pid",
                    f"SlurmdPidFile={root}/slurmd.pid",
                    f"SlurmctldLogFile={root}/log/slurmctld.log",
                    f"SlurmdLogFile={root}/log/slurmd.log",
                    f"PlugStackConfig={root}/plugstack.conf",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "GresTypes=gpu",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "SlurmctldTimeout=30",
                    "SlurmdTimeout=30",
                    "InactiveLimit=0",
                    "MinJobAge=600",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000"
                    f" Gres=gpu:{self.gpus} State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _spawn(self, argv: list[str], log: str) -> None:
        env = {**os.environ, **self.env}
        with open(self.root / "log" / log, "ab") as out:
            self.processes.append(
                subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            )

    def run(
        self, *argv: str, timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env={**(os.environ if env is None else env), **self.env},
            capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        self._write_config()
        root = self.root
        self._spawn(
            [
                "munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                f"--key-file={root}/munge/munge.key", f"--pid-file={root}/munge/munged.pid",
                f"--seed-file={root}/munge/seed", f"--log-file={root}/log/munged.log",
            ],
            "munged.out",
        )  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        self._spawn(["slurmd", "-D", "-f", str(self.conf)], "slurmd.out")
        self._wait(self._node_idle, timeout, "the node to become idle")

    def _node_idle(self) -> bool:
        result = self.run("sinfo", "-h", "-N", "-o", "%T")
        return result.returncode == 0 and result.stdout.strip() in ("idle", "mixed")

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args for p in self.processes if p.poll() is not None]
            if dead:
                raise SlurmError(f"{dead} exited while waiting for {what}:\n{self.logs()}")
            time.sleep(0.5)
        raise SlurmError(f"timed out waiting for {what}:\n{self.logs()}")

    def logs(self, lines: int = 30) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def wait_job(self, job_id: str, timeout: float) -> dict[str, str]:
        """Wait until no task of the job is pending or running; return task id -> state
        (from scontrol, which keeps finished jobs for MinJobAge seconds)."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            result = self.run("scontrol", "-o", "show", "job", job_id)
            states = {}
            for line in result.stdout.splitlines():
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                task = fields.get("ArrayTaskId", "0")
                states[task] = fields.get("JobState", "?")
            if states and all(s not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")
                              for s in states.values()):  # fmt: skip
                return states
            time.sleep(1)
        raise SlurmError(f"job {job_id} still running after {timeout}s: {states}\n{self.logs()}")

    def stop(self) -> None:
        """Cancel what is left of this cluster's jobs (a failed test), then stop the daemons
        this object started, by pid."""
        if self.processes and self.processes[-1].poll() is None:
            queued = self.run("squeue", "-h", "-o", "%A").stdout.split()
            if queued:
                self.run("scancel", *sorted(set(queued)))
                time.sleep(2)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()
