#!/usr/bin/env bash
# Bring up a real single-node Slurm cluster on this machine: munge, slurmctld and
# slurmd from Debian's packages, one partition holding the node that `slurmd -C`
# describes. Idempotent: run it again and it only starts what is not running.
#
# Needs root (the daemons and apt-get). Environment knobs:
#   SLURM_PARTITION   partition name (default: debug)
#   SLURM_MEM_HEADROOM_MB  memory kept back from the node's RealMemory (default: 2048)
#   SLURM_UP_TIMEOUT  seconds to wait for the node to become idle (default: 60)
set -euo pipefail

partition=${SLURM_PARTITION:-debug}
headroom_mb=${SLURM_MEM_HEADROOM_MB:-2048}
timeout_s=${SLURM_UP_TIMEOUT:-60}
conf=/etc/slurm/slurm.conf

say() { printf 'slurm-up: %s\n' "$*"; }
die() { printf 'slurm-up: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and there is no apt-get to install them"
    say "installing slurm-wlm and munge from Debian's packages"
    apt-get update -qq || die "apt-get update failed: is the Debian package mirror reachable?"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
fi

# 2. munge: a key, its folders, the daemon.
install -d -o munge -g munge -m 700 /etc/munge /var/log/munge /var/lib/munge
install -d -o munge -g munge -m 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# 3. slurm.conf from what this machine is. Written only when it changes, so a
#    running cluster is not disturbed by a second call.
node_line=$(slurmd -C | head -n 1)   # NodeName=... CPUs=... RealMemory=...
real_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
[ -n "$real_mem" ] && [ -n "$cpus" ] || die "could not read CPUs and RealMemory from 'slurmd -C': $node_line"
mem=$(( real_mem > headroom_mb + 512 ? real_mem - headroom_mb : real_mem ))
node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node_line")
node_name=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node_line")
# Debian's slurm runs prologs etc. from here; make sure the folders exist.
install -d /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/slurm

new_conf=$(cat <<EOF
# Written by scripts/slurm-up.sh: a single-node cluster for this machine.
ClusterName=vasso
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
# Short waits keep requeue and time-limit tests quick.
KillWait=10
MinJobAge=60
InactiveLimit=0
$node_line State=UNKNOWN
PartitionName=$partition Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$new_conf" ]; then
    say "writing $conf ($cpus CPUs, ${mem} MB)"
    printf '%s\n' "$new_conf" >"$conf"
    # A changed configuration needs the daemons restarted.
    pkill -x slurmctld 2>/dev/null || true
    pkill -x slurmd 2>/dev/null || true
    for _ in $(seq 100); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.1; done
fi

# 4. The daemons.
if ! pgrep -x slurmctld >/dev/null; then
    say "starting slurmctld"
    slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
    say "starting slurmd"
    slurmd
fi

# 5. Wait until the node takes jobs.
deadline=$(( SECONDS + timeout_s ))
state=""
while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*) scontrol update NodeName="$node_name" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mixed|allocated) say "cluster up: partition '$partition', node $node_name is $state" ;;
    *) die "node is '$state' after ${timeout_s}s (see /var/log/slurm/slurmctld.log and slurmd.log)" ;;
esac
