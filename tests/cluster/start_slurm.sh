#!/usr/bin/env bash
# Install (if needed) and start a real single-node SLURM on this machine, by hand (no systemd),
# for pipe_rules' integration tests. Idempotent: exits at once if the node is already idle.
# Must run as root. Last line on success: "slurm ready: partition=debug cpus=N mem_mb=M".
set -euo pipefail

if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  echo "slurm ready: partition=debug cpus=$(nproc) (already running)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "start_slurm.sh must run as root (it installs packages and starts daemons)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge authenticates every SLURM RPC; the key must exist and be private to munge.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
# Written by pipe_rules tests/cluster/start_slurm.sh: a single-node test cluster.
ClusterName=piperules
SlurmctldHost=${host}
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
# No systemd, no cgroups: track processes through /proc, no task containment.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it every job takes the node's whole memory and jobs run one at a time.
DefMemPerCPU=1000
# No accounting daemon: sacct has no data, so finished jobs must stay visible to squeue/scontrol.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
# Walltime tests: SIGTERM at the limit, SIGKILL 10 s later.
KillWait=10
OverTimeLimit=0
SchedulerType=sched/backfill
ReturnToService=2
SlurmdTimeout=60
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    scontrol update nodename="${host}" state=resume >/dev/null 2>&1 || true
    echo "slurm ready: partition=debug cpus=${cpus} mem_mb=${mem_mb}"
    exit 0
  fi
  sleep 0.5
done
echo "SLURM did not become ready in 30 s; sinfo says: $(sinfo 2>&1 | tail -n +2)" >&2
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
