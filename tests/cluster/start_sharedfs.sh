#!/usr/bin/env bash
# Install (if needed) and start two real shared filesystems, each mounted twice on this machine,
# for pipe_rules' multi-node tests (workers on the two mounts behave like workers on two nodes):
#   GlusterFS: glusterd by hand, a one-brick volume (created with `force`), two `mount -t glusterfs`.
#   sshfs:     sshd on 127.0.0.1 (own config, port and root key), one folder sshfs-mounted twice.
# Idempotent: exits at once when all four mounts answer. Must run as root.
# Last line on success: "sharedfs ready: gluster=A,B sshfs=A,B".
# Mount points: $PIPE_RULES_SHAREDFS (default /mnt/pipe_rules_sharedfs)/{gluster,sshfs}_{a,b}.
set -euo pipefail

BASE=${PIPE_RULES_SHAREDFS_STATE:-/var/lib/pipe_rules_sharedfs}  # brick, exported folder, sshd files
MNT=${PIPE_RULES_SHAREDFS:-/mnt/pipe_rules_sharedfs}
VOL=pipe_rules_gv
PORT=${PIPE_RULES_SSHD_PORT:-2222}
host=$(hostname)

is_mounted() { findmnt -n -M "$1" -t "$2" >/dev/null 2>&1; }
answers() { timeout 5 stat -f "$1" >/dev/null 2>&1 && timeout 5 ls "$1" >/dev/null 2>&1; }
all_up() {
  for m in gluster_a gluster_b; do is_mounted "$MNT/$m" fuse.glusterfs && answers "$MNT/$m" || return 1; done
  for m in sshfs_a sshfs_b; do is_mounted "$MNT/$m" fuse.sshfs && answers "$MNT/$m" || return 1; done
}
ready() { echo "sharedfs ready: gluster=$MNT/gluster_a,$MNT/gluster_b sshfs=$MNT/sshfs_a,$MNT/sshfs_b$*"; }

if all_up; then ready " (already mounted)"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "start_sharedfs.sh must run as root (it installs packages, starts daemons, mounts)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "start_sharedfs.sh: /dev/fuse is missing: this kernel or container has no FUSE" >&2; exit 1; }

if ! command -v glusterd >/dev/null || ! command -v mount.glusterfs >/dev/null || ! command -v sshfs >/dev/null \
   || ! command -v sshd >/dev/null || ! command -v unshare >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq --error-on=any || { echo "start_sharedfs.sh: apt-get update failed (no package mirror reachable?)" >&2; exit 1; }
  apt-get install -y -qq glusterfs-server glusterfs-client sshfs openssh-server openssh-client util-linux >/dev/null \
    || { echo "start_sharedfs.sh: apt-get install glusterfs-server glusterfs-client sshfs openssh-server failed" >&2; exit 1; }
fi
for c in glusterd gluster mount.glusterfs sshfs sshd ssh-keygen unshare; do
  command -v $c >/dev/null || { echo "start_sharedfs.sh: $c missing after installing the packages" >&2; exit 1; }
done
# a mount whose daemon died ("Transport endpoint is not connected") blocks even mkdir: drop it first
for m in gluster_a gluster_b sshfs_a sshfs_b; do
  if findmnt -n -M "$MNT/$m" >/dev/null 2>&1 && ! answers "$MNT/$m"; then umount -l "$MNT/$m" || true; fi
done
mkdir -p "$BASE/brick" "$BASE/export" "$BASE/ssh" "$MNT"/{gluster_a,gluster_b,sshfs_a,sshfs_b}

# ---- GlusterFS -------------------------------------------------------------------------------
if ! pgrep -x glusterd >/dev/null; then
  glusterd -p /run/pipe_rules_glusterd.pid
fi
SECONDS=0
until gluster --mode=script pool list >/dev/null 2>&1; do
  [ $SECONDS -lt 30 ] || { echo "start_sharedfs.sh: glusterd does not answer after 30 s" >&2; tail -n 5 /var/log/glusterfs/glusterd.log >&2 || true; exit 1; }
  sleep 0.5
done
if ! gluster --mode=script volume info "$VOL" >/dev/null 2>&1; then
  # force: the brick sits on the root filesystem, which gluster refuses without it
  gluster --mode=script volume create "$VOL" "$host:$BASE/brick" force >/dev/null \
    || { echo "start_sharedfs.sh: gluster volume create failed" >&2; exit 1; }
fi
if ! gluster --mode=script volume status "$VOL" >/dev/null 2>&1; then
  gluster --mode=script volume start "$VOL" force >/dev/null || { echo "start_sharedfs.sh: gluster volume start failed" >&2; exit 1; }
fi
for m in gluster_a gluster_b; do
  if is_mounted "$MNT/$m" fuse.glusterfs && ! answers "$MNT/$m"; then umount -l "$MNT/$m" || true; fi
  if ! is_mounted "$MNT/$m" fuse.glusterfs; then
    ok=
    for _ in 1 2 3 4 5 6 7 8 9 10; do  # the brick process needs a moment after `volume start`
      if mount -t glusterfs "$host:/$VOL" "$MNT/$m" 2>/dev/null && answers "$MNT/$m"; then ok=1; break; fi
      umount -l "$MNT/$m" 2>/dev/null || true
      sleep 1
    done
    [ -n "$ok" ] || { echo "start_sharedfs.sh: mount -t glusterfs $host:/$VOL $MNT/$m failed" >&2; exit 1; }
  fi
done

# ---- sshfs over an sshd of our own on 127.0.0.1 ------------------------------------------------------
[ -s "$BASE/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$BASE/ssh/host_ed25519"
[ -s "$BASE/ssh/root_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$BASE/ssh/root_ed25519"
cp "$BASE/ssh/root_ed25519.pub" "$BASE/ssh/authorized_keys"
chmod 700 "$BASE/ssh"; chmod 600 "$BASE/ssh/authorized_keys" "$BASE/ssh/host_ed25519" "$BASE/ssh/root_ed25519"
cat > "$BASE/ssh/sshd_config" <<CONF
# Written by pipe_rules tests/cluster/start_sharedfs.sh: loopback only, key only, for sshfs test mounts.
ListenAddress 127.0.0.1
Port $PORT
HostKey $BASE/ssh/host_ed25519
PidFile /run/pipe_rules_sshd.pid
AuthorizedKeysFile $BASE/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
Subsystem sftp internal-sftp
CONF
mkdir -p /run/sshd
sshd_pid=$(cat /run/pipe_rules_sshd.pid 2>/dev/null || true)
if [ -z "$sshd_pid" ] || ! kill -0 "$sshd_pid" 2>/dev/null; then
  /usr/sbin/sshd -f "$BASE/ssh/sshd_config" || { echo "start_sharedfs.sh: sshd -f $BASE/ssh/sshd_config failed" >&2; exit 1; }
fi
SSHFS_OPTS="port=$PORT,IdentityFile=$BASE/ssh/root_ed25519,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes,reconnect,ServerAliveInterval=15"
for m in sshfs_a sshfs_b; do
  if is_mounted "$MNT/$m" fuse.sshfs && ! answers "$MNT/$m"; then umount -l "$MNT/$m" || true; fi
  if ! is_mounted "$MNT/$m" fuse.sshfs; then
    ok=
    for _ in 1 2 3 4 5 6 7 8 9 10; do  # sshd needs a moment to listen
      if sshfs -o "$SSHFS_OPTS" "root@127.0.0.1:$BASE/export" "$MNT/$m" 2>/dev/null && answers "$MNT/$m"; then ok=1; break; fi
      umount -l "$MNT/$m" 2>/dev/null || true
      sleep 0.5
    done
    [ -n "$ok" ] || { echo "start_sharedfs.sh: sshfs root@127.0.0.1:$BASE/export $MNT/$m failed" >&2; exit 1; }
  fi
done

all_up || { echo "start_sharedfs.sh: mounts are not answering: $(findmnt -n -o TARGET,FSTYPE | grep "$MNT" | tr '\n' ' ')" >&2; exit 1; }
ready
