#!/usr/bin/env bash
# A single-node SLURM on this machine, for the tests of the SLURM path (tests/test_slurm.py) and for trying the
# cluster commands of docs/cli.md ("On a cluster") without a cluster.
#
#   bash scripts/slurm_local.sh start    # install slurm-wlm + munge where missing (apt, as root), start munged,
#                                        # slurmctld and slurmd; prints the SLURM_CONF line to export
#   bash scripts/slurm_local.sh stop     # stop them (jobs are cancelled); the state directory stays
#   bash scripts/slurm_local.sh status   # sinfo, or why there is no SLURM
#
# One node named after this host with what `slurmd -C` reports (CPUs, RealMemory), one partition `debug` (the default,
# no time limit), proctrack/linuxproc, task/none, no cgroups, no accounting; every daemon runs as root, its files
# under $UNETLAB_SLURM_DIR (default /tmp/unetlab-slurm): slurm.conf, logs, spool, state.
set -euo pipefail

DIR="${UNETLAB_SLURM_DIR:-/tmp/unetlab-slurm}"
CONF="$DIR/slurm.conf"

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "slurm_local.sh: $1 needs root (the daemons run as root here)" >&2
    exit 2
  fi
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  need_root "installing slurm-wlm and munge"
  command -v apt-get >/dev/null || { echo "slurm_local.sh: no apt-get to install slurm-wlm and munge" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
}

write_conf() {
  mkdir -p "$DIR/spool" "$DIR/state" "$DIR/log"
  local node host
  host="$(hostname -s)"
  # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
  node="$(slurmd -C | head -n 1)"
  cat >"$CONF" <<CONF
# written by scripts/slurm_local.sh: a single-node SLURM for tests
ClusterName=unetlab-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${UNETLAB_SLURMCTLD_PORT:-6917}
SlurmdPort=${UNETLAB_SLURMD_PORT:-6918}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MinJobAge=300
KillWait=10
# a requeued job may start again at once (the default holds it back for a while)
JobRequeue=1
SlurmctldTimeout=30
SlurmdTimeout=30
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

start_munge() {
  if munge -n </dev/null >/dev/null 2>&1; then
    return
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && return; sleep 0.1; done
  echo "slurm_local.sh: munged did not start" >&2
  exit 1
}

wait_idle() {
  for _ in $(seq 150); do
    state="$(SLURM_CONF="$CONF" sinfo -h -o '%t' 2>/dev/null | head -n 1 || true)"
    case "$state" in idle*|mix*|alloc*) return ;; esac
    sleep 0.2
  done
  echo "slurm_local.sh: the node did not come up (state '${state:-none}'); see $DIR/log/" >&2
  exit 1
}

start() {
  install
  need_root "starting the daemons"
  if SLURM_CONF="$CONF" sinfo -h >/dev/null 2>&1; then
    echo "export SLURM_CONF=$CONF   # already running"
    return
  fi
  write_conf
  start_munge
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  wait_idle
  echo "export SLURM_CONF=$CONF"
}

stop() {
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    if [ -s "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  for _ in $(seq 50); do
    pgrep -f "slurm(ctld|d) -f $CONF" >/dev/null || break
    sleep 0.1
  done
  pkill -9 -f "slurm(ctld|d) -f $CONF" 2>/dev/null || true
  rm -f "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF="$CONF" sinfo || { echo "no SLURM running with $CONF"; exit 1; } ;;
  *) echo "usage: bash scripts/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
