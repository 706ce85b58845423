#!/bin/bash
# A single-node Slurm on this machine, for tests: Debian's slurm-wlm and munge, a minimal
# slurm.conf in DIR, the daemons started by hand (no systemd) and stopped by their pids.
#   scripts/slurm-local.sh start DIR   # installs if missing, starts; prints SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-local.sh stop DIR    # stops what `start DIR` started
# Needs root (munged runs as the munge user, the Slurm daemons as root). Exits non-zero, saying
# why, when a daemon cannot start.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf="$dir/slurm.conf"

stop() {
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd (start, stop)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "slurm-local: needs root (munged and slurmd are started by hand)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-local: installing slurm-wlm and munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge >"$dir/apt.log" 2>&1 \
        || { echo "slurm-local: apt-get install slurm-wlm munge failed (see $dir/apt.log)" >&2; exit 1; }
fi

# munge: the key and the socket directory belong to the munge user, and munged runs as it.
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    [ -f /etc/munge/munge.key ] || mungekey -c
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.1; done
    (munge -n | unmunge) >/dev/null 2>&1 || { echo "slurm-local: munged does not answer" >&2; exit 1; }
    cp /run/munge/munged.pid "$dir/munged.pid" 2>/dev/null || true
fi

mem_mib=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
cpus=$(nproc)
mkdir -p "$dir/state" "$dir/spool"
cat >"$conf" <<CONF
ClusterName=keel-local
SlurmctldHost=localhost
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$conf"
slurmctld -D -f "$conf" >"$dir/slurmctld.out" 2>&1 &
sleep 1
slurmd -D -f "$conf" >"$dir/slurmd.out" 2>&1 &
for _ in $(seq 60); do
    state=$(sinfo -h -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
if [ "${state:-}" != idle ]; then
    echo "slurm-local: the node is not idle after 30 s (state: ${state:-none}); slurmd says:" >&2
    tail -5 "$dir/slurmd.log" "$dir/slurmd.out" >&2 2>/dev/null || true
    stop
    exit 1
fi
echo "SLURM_CONF=$conf"
