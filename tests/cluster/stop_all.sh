#!/usr/bin/env bash
# Stop the test SLURM (slurmd, slurmctld, munged) and Grid Engine (sge_execd, sge_qmaster) started by
# start_slurm.sh / start_sge.sh, cancelling their jobs first, so a start from scratch can be tested.
#   stop_all.sh [slurm|sge] [--purge]   (default: both)
#   --purge  also delete SLURM's saved state (jobs, job-id counter) and logs.
# Packages and configuration stay installed. Idempotent: nothing running is fine.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "stop_all.sh must run as root" >&2; exit 1; }
which=both purge=0
for a in "$@"; do
  case $a in slurm|sge) which=$a ;; --purge) purge=1 ;; *) echo "usage: stop_all.sh [slurm|sge] [--purge]" >&2; exit 2 ;; esac
done

# A zombie counts as stopped (this container's PID 1 may reap late).
alive() { local p; for p; do grep -qs '^State:[[:space:]]*[^Z]' /proc/"$p"/status && return 0; done; return 1; }
# Stop a daemon by its pid file and exact process name (never a pattern); SIGKILL after 10 s.
stop() {  # stop NAME [PIDFILE]
  local name=$1 pidfile=${2:-} pids
  pids=$( { [ -n "$pidfile" ] && cat "$pidfile" 2>/dev/null; pgrep -x "$name"; } | sort -u || true)
  pids=$(for p in $pids; do [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$name" ] && echo "$p"; done | tr '\n' ' ')
  [ -n "${pids// }" ] || return 0
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 20); do alive $pids || { echo "stopped $name"; return 0; }; sleep 0.5; done
  kill -9 $pids 2>/dev/null || true
  echo "killed $name (did not stop within 10 s)"
}

stop_slurm() {
  # Cancel jobs while slurmctld still answers, so no job processes outlive slurmd.
  if pgrep -x slurmctld >/dev/null && command -v squeue >/dev/null; then
    local jobs; jobs=$(squeue -h -t PENDING,RUNNING,SUSPENDED -o %F 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [ -n "${jobs// }" ]; then scancel $jobs 2>/dev/null || true; sleep 2; fi
  fi
  stop slurmd /run/slurmd.pid
  stop slurmctld /run/slurmctld.pid
  stop slurmstepd
  stop munged /run/munge/munged.pid
  if [ $purge = 1 ]; then
    rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* /var/log/slurm/*.log
    echo "purged SLURM state and logs"
  fi
}

stop_sge() {
  export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
  # -kej: stop execd and kill its jobs (a plain SIGTERM would leave the jobs running).
  if pgrep -x sge_qmaster >/dev/null && command -v qconf >/dev/null; then
    qconf -kej "$(hostname)" >/dev/null 2>&1 || true
  fi
  stop sge_execd
  # SIGTERM = controlled shutdown, ~5 s (qconf -km takes ~10 s).
  stop sge_qmaster /var/spool/gridengine/qmaster/qmaster.pid
}

[ $which = sge ] || stop_slurm
[ $which = slurm ] || stop_sge
echo "stopped: $which"
