#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests marked `services` and for trying
# `hydra/launcher=slurm` and `scripts/slurm/train.sbatch` without a real cluster:
#
#   sudo scripts/services/slurm.sh          # up (idempotent: a running cluster is left alone)
#   sudo scripts/services/slurm.sh stop     # down (the daemons this script started)
#   scripts/services/slurm.sh status        # exit 0 when the node answers
#
# Debian's slurm-wlm and munge (installed when missing), run as root without systemd, cgroups or
# containers: munged, slurmctld and slurmd as plain daemons, their state and logs under
# /var/lib/cnnzoo-slurm and /var/log/cnnzoo-slurm. The node is this host (`hostname -s`) with all
# its CPUs; partitions:
#   debug   Default, what jobs get unless they ask (PriorityTier 1, pre-emptible)
#   urgent  the same node at a higher tier: a job here pre-empts debug jobs the way a real
#           cluster does (PreemptMode=REQUEUE: SIGTERM at once, requeued after GraceTime=30 s)
# A requeued job waits 120 s before it may start again (SLURM's BeginTime); the tests release it
# earlier with `scontrol update JobId=<id> StartTime=now`.
# The config is written when the cluster starts: `stop`, then up again, to apply a change.
set -euo pipefail

STATE=/var/lib/cnnzoo-slurm
LOGS=/var/log/cnnzoo-slurm
CONF_DIR=/etc/slurm
NODE=$(hostname -s)

say() { echo "slurm.sh: $*" >&2; }

node_up() {
  # the node answers and takes jobs (idle, mixed or allocated: not down, drained or unknown)
  local state
  state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1) || return 1
  [[ "$state" =~ ^(idle|mixed|allocated|completing)$ ]]
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

stop() {
  local pidfile
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
    if pid_alive "$pidfile"; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 50); do pid_alive "$pidfile" || break; sleep 0.1; done
    fi
  done
  say "stopped"
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  say "installing slurm-wlm and munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
  if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
    "${apt[@]}" update
  fi
  "${apt[@]}" install --no-install-recommends slurm-wlm munge >/dev/null
}

start_munge() {
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

write_config() {
  local cpus mem_mb
  cpus=$(nproc)
  # RealMemory a little below the machine's, so slurmd never finds less than it was told
  mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
  mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS"
  cat >"$CONF_DIR/slurm.conf" <<EOF
# written by cnnzoo's scripts/services/slurm.sh: a one-node cluster on $NODE
ClusterName=cnnzoo
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups here: processes tracked through /proc, no task containment, no accounting daemon
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# CPUs are the consumable: one job per CPU it asks for (memory is checked, not reserved)
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# quick scheduling: a test's job starts within a second or two of its submission
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MessageTimeout=20
MaxJobCount=10000
# finished jobs stay visible to scontrol for 10 minutes (there is no sacct here)
MinJobAge=600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
# a job being ended has KillWait seconds between SIGTERM and SIGKILL to save its checkpoint
KillWait=20
# pre-emption as on a shared cluster: an urgent-partition job pre-empts debug jobs, which get
# SIGTERM at once and are requeued when the partition's GraceTime is over (if still running)
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=urgent Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
}

up() {
  if node_up; then
    say "already up ($(sinfo -h -N -n "$NODE" -o '%T' | head -n 1))"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "run as root (it installs packages and starts daemons): sudo $0"
    exit 1
  fi
  install_packages
  start_munge
  write_config
  if ! pid_alive "$STATE/slurmctld.pid"; then
    slurmctld
  fi
  if ! pid_alive "$STATE/slurmd.pid"; then
    slurmd
  fi
  for _ in $(seq 120); do
    if node_up; then
      say "up: $(sinfo -h -o '%P %a %D %T' | tr '\n' ' ')"
      return
    fi
    sleep 0.5
  done
  say "the node did not come up; see $LOGS/slurmctld.log and $LOGS/slurmd.log"
  sinfo -N -l >&2 || true
  exit 1
}

case "${1:-up}" in
  up) up ;;
  stop) stop ;;
  status) node_up ;;
  *) say "usage: $0 [up|stop|status]"; exit 2 ;;
esac
