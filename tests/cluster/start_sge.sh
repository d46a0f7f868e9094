#!/usr/bin/env bash
# Install (if needed) and start a real single-node Son of Grid Engine 8.1.9 on this machine, by hand
# (no systemd), for pipe_rules' integration tests. Idempotent: exits at once if the queue is usable.
# Must run as root. Prints the environment to use; last line on success:
#   "sge ready: queue=all.q slots=N"
set -euo pipefail

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
QUEUE=all.q
here=$(cd "$(dirname "$0")" && pwd)
host=$(hostname)
slots=$(nproc)

print_env() {
  printf 'export SGE_ROOT=%s\nexport SGE_CELL=%s\n' "$SGE_ROOT" "$SGE_CELL" | tee "$here/sge.env"
}
# A queue instance is usable when its state column is empty (no a(larm), u(nknown), d(isabled), E(rror)).
queue_ok() {
  qstat -f -q "$QUEUE" 2>/dev/null | awk -v q="$QUEUE@" 'index($1, q) == 1 && NF == 5 {ok = 1} END {exit !ok}'
}

if command -v qstat >/dev/null && pgrep -x sge_qmaster >/dev/null && pgrep -x sge_execd >/dev/null && queue_ok; then
  print_env
  echo "sge ready: queue=$QUEUE slots=$(qconf -sq "$QUEUE" | awk '$1 == "slots" {print $2}') (already running)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "start_sge.sh must run as root (it installs packages and starts daemons)" >&2; exit 1; }

if ! command -v sge_qmaster >/dev/null || ! command -v sge_execd >/dev/null || ! command -v qsub >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # Without the preseed the postinst neither knows the master host nor creates the cell/spool.
  for pkg in gridengine-common gridengine-master gridengine-client; do
    printf '%s shared/gridenginemaster string %s\n%s shared/gridenginecell string default\n%s shared/gridengineconfig boolean true\n' \
      "$pkg" "$host" "$pkg" "$pkg"
  done | debconf-set-selections
  # --error-on=any: an unreachable mirror is only a warning (exit 0) otherwise.
  apt-get update -qq --error-on=any || { echo "start_sge.sh: apt-get update failed (no package mirror reachable?)" >&2; exit 1; }
  apt-get install -y -qq gridengine-master gridengine-exec gridengine-client >/dev/null \
    || { echo "start_sge.sh: apt-get install gridengine-* failed" >&2; exit 1; }
fi
for c in sge_qmaster sge_execd qconf qsub qstat; do
  command -v $c >/dev/null || { echo "start_sge.sh: $c missing after installing gridengine-*" >&2; exit 1; }
done
[ -s "$SGE_ROOT/$SGE_CELL/common/act_qmaster" ] \
  || { echo "start_sge.sh: $SGE_ROOT/$SGE_CELL/common not initialised (gridengine-master postinst did not run?)" >&2; exit 1; }

# Clients connecting over loopback are seen by qmaster as "localhost", which is no known host: alias it.
echo "$host localhost" > "$SGE_ROOT/$SGE_CELL/common/host_aliases"

pgrep -x sge_qmaster >/dev/null || /usr/sbin/sge_qmaster
for _ in $(seq 1 40); do qconf -sh >/dev/null 2>&1 && break; sleep 0.5; done
qconf -sh >/dev/null 2>&1 || { echo "start_sge.sh: sge_qmaster does not answer" >&2; \
  tail -n 20 /var/spool/gridengine/qmaster/messages >&2 || true; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# qconf reports success on stderr too: keep it quiet unless it fails.
q() { local out; out=$("$@" 2>&1) || { echo "start_sge.sh: $* failed: $out" >&2; exit 1; }; }
qconf -sh | grep -qx "$host" || q qconf -ah "$host"
qconf -ss 2>/dev/null | grep -qx "$host" || q qconf -as "$host"
# Root's jobs are refused while min_uid/min_gid are 1000. -Mconf takes the target from the file name.
qconf -sconf global | sed -E 's/^(min_uid|min_gid)( +).*/\1\20/' > "$tmp/global"
q qconf -Mconf "$tmp/global"
# The default scheduler runs every 15 s; tests want dispatch within a second or two of qsub.
qconf -ssconf | sed -E \
  -e 's/^(schedule_interval +).*/\10:0:1/' -e 's/^(flush_submit_sec|flush_finish_sec)( +).*/\1\21/' \
  -e 's/^(job_load_adjustments +).*/\1NONE/' > "$tmp/sconf"
q qconf -Msconf "$tmp/sconf"
# Parallel environment for multi-threaded jobs: qsub -pe smp N (all N slots on one host).
cat > "$tmp/smp" <<PE
pe_name            smp
slots              $slots
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
PE
if qconf -spl 2>/dev/null | grep -qx smp; then q qconf -Mp "$tmp/smp"; else q qconf -Ap "$tmp/smp"; fi
# qconf -Aq needs every attribute: start from the built-in template (`qconf -aq` with EDITOR=cat
# prints it, then fails because the name "template" is refused). No load threshold: a busy 2-core
# test machine would otherwise put the queue in alarm state and stop dispatching.
# unix_behavior: the job script's #! line picks the shell (posix_compliant would force /bin/sh).
{ EDITOR=cat qconf -aq 2>/dev/null || true; } | sed -E \
  -e "s/^(qname +).*/\1$QUEUE/" -e "s/^(hostlist +).*/\1$host/" -e "s/^(slots +).*/\1$slots/" \
  -e 's/^(load_thresholds +).*/\1NONE/' -e 's/^(pe_list +).*/\1smp/' \
  -e 's/^(shell_start_mode +).*/\1unix_behavior/' -e 's/^(shell +).*/\1\/bin\/bash/' > "$tmp/$QUEUE"
grep -q "^qname *$QUEUE" "$tmp/$QUEUE" || { echo "start_sge.sh: could not dump the queue template" >&2; exit 1; }
if qconf -sql 2>/dev/null | grep -qx "$QUEUE"; then q qconf -Mq "$tmp/$QUEUE"; else q qconf -Aq "$tmp/$QUEUE"; fi

pgrep -x sge_execd >/dev/null || /usr/sbin/sge_execd
for _ in $(seq 1 60); do
  if queue_ok; then
    print_env
    echo "sge ready: queue=$QUEUE slots=$slots"
    exit 0
  fi
  sleep 0.5
done
echo "start_sge.sh: queue $QUEUE not usable after 30 s; qstat -f says:" >&2
qstat -f >&2 || true
tail -n 10 /var/spool/gridengine/qmaster/messages /var/spool/gridengine/execd/*/messages >&2 || true
exit 1
