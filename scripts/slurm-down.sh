#!/usr/bin/env bash
# Stop the single-node Slurm cluster that scripts/slurm-up.sh started.
# Cancels every job first; leaves the packages and slurm.conf in place.
set -uo pipefail

say() { printf 'slurm-down: %s\n' "$*"; }

if pgrep -x slurmctld >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
for daemon in slurmd slurmctld munged; do
    if pgrep -x "$daemon" >/dev/null; then
        say "stopping $daemon"
        pkill -x "$daemon"
    fi
done
for _ in $(seq 50); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null \
        || { say "stopped"; exit 0; }
    sleep 0.2
done
say "still running after 10 s; sending SIGKILL"
for daemon in slurmd slurmctld munged; do pkill -9 -x "$daemon"; done
exit 0
