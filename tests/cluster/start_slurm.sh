#!/usr/bin/env bash
# Install (if needed) and start a real single-node SLURM on this machine, by hand (no systemd),
# for pipe_rules' integration tests. Idempotent: exits at once if the node is already up.
# Must run as root. Last line on success: "slurm ready: partition=debug cpus=N mem_mb=M".
set -euo pipefail

# Ask sinfo only if both daemons run: without slurmctld sinfo retries for ~9 s before failing.
# Exact match: "idle*" means slurmd stopped answering.
node_up() {
  pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null \
    && sinfo -h -p debug -o '%T' 2>/dev/null | grep -qxE 'idle|mixed|allocated|completing'
}
ready() {  # the line the test harness reads; values as slurmctld knows them
  local line; line=$(scontrol show node -o 2>/dev/null | head -n 1)
  echo "slurm ready: partition=debug cpus=$(sed -E 's/.*CPUTot=([0-9]+).*/\1/' <<<"$line")" \
       "mem_mb=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$line")$*"
}

if command -v sinfo >/dev/null && node_up; then ready " (already running)"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "start_slurm.sh must run as root (it installs packages and starts daemons)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # --error-on=any: an unreachable mirror is only a warning (exit 0) otherwise.
  apt-get update -qq --error-on=any || { echo "start_slurm.sh: apt-get update failed (no package mirror reachable?)" >&2; exit 1; }
  apt-get install -y -qq slurm-wlm munge >/dev/null \
    || { echo "start_slurm.sh: apt-get install slurm-wlm munge failed" >&2; exit 1; }
fi
for c in slurmctld slurmd munged munge sinfo sbatch; do
  command -v $c >/dev/null || { echo "start_slurm.sh: $c missing after installing slurm-wlm munge" >&2; exit 1; }
done

# munge authenticates every SLURM RPC; the key must exist and be private to munge.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
munge -n </dev/null | unmunge >/dev/null 2>&1 \
  || { echo "start_slurm.sh: munged is not working; /var/log/munge/munged.log:" >&2; tail -n 5 /var/log/munge/munged.log >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
# Leave 1 GiB to the OS: a RealMemory above what slurmd measures drains the node ("Low RealMemory").
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf.new <<CONF
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
# No accounting daemon: sacct has no data, so finished jobs must stay visible to squeue/scontrol
# (snakemake's slurm plugin: --slurm-status-command squeue, which wants MinJobAge >= 3 x its poll interval).
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
if cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf; then
  rm /etc/slurm/slurm.conf.new
else
  mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
  pgrep -x slurmctld >/dev/null && scontrol reconfigure >/dev/null 2>&1 || true
fi

# -c: start with an empty queue (no jobs left over from an earlier run).
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
SECONDS=0
while [ $SECONDS -lt 30 ]; do
  if node_up; then ready; exit 0; fi
  # A node left DOWN/DRAINED by an earlier run (e.g. after a slurmd kill) does not come back alone.
  sinfo -h -o '%T' 2>/dev/null | grep -qE '^(down|drain)' && scontrol update nodename="${host}" state=resume >/dev/null 2>&1 || true
  sleep 0.5
done
echo "start_slurm.sh: SLURM did not become ready in 30 s; sinfo says: $(sinfo 2>&1 | tail -n +2)" >&2
pgrep -a -x slurmctld >&2 || echo "slurmctld is not running" >&2
pgrep -a -x slurmd >&2 || echo "slurmd is not running" >&2
tail -n 10 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
