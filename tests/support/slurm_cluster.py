"""A one-node SLURM cluster on localhost for tests: munged, slurmctld and slurmd from Debian's packages, with a
generated slurm.conf. Started by the `slurm` fixture in test_slurm.py and stopped after."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")

CONF = """\
ClusterName=opengrpo
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _munge_works() -> bool:
    cred = subprocess.run(["munge", "-n"], capture_output=True)
    return cred.returncode == 0 and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def start(self, timeout: float = 60.0) -> None:
        host = socket.gethostname().split(".")[0]
        for d in ("state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
        self.conf.write_text(CONF.format(host=host, root=self.root, cpus=os.cpu_count(), mem_mb=mem_mb,
                                         ctld_port=16817, d_port=16818))  # fmt: skip
        self._start_munge()
        self.procs.append(subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-c", "-f", str(self.conf)], env=self.env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))  # fmt: skip
        time.sleep(1.0)
        self.procs.append(subprocess.Popen(["/usr/sbin/slurmd", "-D", "-f", str(self.conf)], env=self.env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                return
            time.sleep(1.0)
        raise RuntimeError(f"SLURM did not come up: {self.logs()}")

    def _start_munge(self, timeout: float = 20.0) -> None:
        if _munge_works():
            return
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True)
            shutil.chown(key, "munge", "munge")
        # --force: a munged killed earlier may have left its socket or lock file behind
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"], check=True)
        deadline = time.time() + timeout
        while not _munge_works():
            if time.time() > deadline:
                raise RuntimeError("munged did not start")
            time.sleep(0.5)

    def run(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env={**self.env, **kw.pop("env", {})}, capture_output=True, text=True, **kw)

    def job_state(self, job_id: str) -> tuple[str, int]:
        """(state, restart count) of a job, from scontrol."""
        out = self.run("scontrol", "show", "job", job_id, "-o").stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        return fields.get("JobState", "UNKNOWN"), int(fields.get("Restarts", 0))

    def logs(self) -> str:
        return "\n".join(
            p.read_text()[-2000:] for p in (self.root / "slurmctld.log", self.root / "slurmd.log") if p.exists()
        )

    def stop(self) -> None:
        self.run("scancel", "--full", "--user", "root")
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
