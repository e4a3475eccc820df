# Shared by testenv/up, down, selfcheck and import-image. Sourced, not run.
#
# A cluster lives entirely in its state directory (default /var/tmp/pvcheck-testenv):
#   .pvcheck-testenv      marker: down removes only directories carrying it
#   slot                  the slot number; ports, bridge, subnets and cgroups derive from it
#   pids/NAME             "PID STARTTIME" of every process up started (down stops these only)
#   logs/NAME.log         each component's log
#   kubeconfig, env       what tests use
#   audit.log             the API server's audit log (JSON lines)

TESTENV=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$TESTENV/bin
STATE_DEFAULT=/var/tmp/pvcheck-testenv
PROG=testenv/$(basename "$0")

# die CODE MESSAGE: one line on stderr, then exit CODE.
die() { local code=$1; shift; echo "$PROG: $*" >&2; exit "$code"; }
say() { echo "$PROG: $*" >&2; }

# set_state DIR: sets STATE (absolute) and the paths inside it.
set_state() {
  case $1 in
    /*) STATE=${1%/} ;;
    *) STATE=$(pwd)/${1%/} ;;
  esac
  [[ $STATE != / && -n $STATE ]] || die 2 "--state: '$1' cannot be a state directory"
  PKI=$STATE/pki
  LOGS=$STATE/logs
  PIDS=$STATE/pids
  KUBECONFIG_FILE=$STATE/kubeconfig
}

# set_slot N: everything that two clusters on one machine must not share.
set_slot() {
  SLOT=$1
  local base=$((20000 + SLOT * 1000))
  PORT_ETCD=$((base + 379))
  PORT_ETCD_PEER=$((base + 380))
  PORT_APISERVER=$((base + 443))
  PORT_KCM=$((base + 257))
  PORT_SCHEDULER=$((base + 259))
  BRIDGE=pvcheck-cni$SLOT
  POD_SUBNET=10.$((240 + SLOT)).0.0/16
  SERVICE_CIDR=10.$((230 + SLOT)).0.0/16
  SERVICE_IP=10.$((230 + SLOT)).0.1
  CGROUP_ROOT=/pvcheck-testenv-$SLOT
}

# Per node (1-based): kubelet ports and names.
node_name() { echo "pvcheck-node-$1"; }
node_port_kubelet() { echo $((20000 + SLOT * 1000 + 250 + ($1 - 1) * 10)); }
node_port_healthz() { echo $((20000 + SLOT * 1000 + 248 + ($1 - 1) * 10)); }
node_dir() { echo "$STATE/node-$1"; }
# The CNI bridge of node N: one per node, since each node's bridge has its own gateway address.
node_bridge() { if (($1 == 1)); then echo "$BRIDGE"; else echo "$BRIDGE-$1"; fi; }
containerd_sock() { echo "$(node_dir "$1")/containerd/containerd.sock"; }

# proc_start PID: the process's start time (field 22 of /proc/PID/stat), empty when gone.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # after "comm) " the fields are numbered from 3; a zombie (Z, X) has ended: nothing reaps
  # the processes up started once up itself has exited (PID 1 here does not), so they linger.
  set -- $stat
  [[ $1 == [ZX] ]] && return 0
  echo "${20}"
}

# alive NAME: whether the process recorded as NAME still runs (same pid and start time).
alive() {
  local f=$PIDS/$1 pid start
  [[ -r $f ]] || return 1
  read -r pid start <"$f" || return 1
  [[ -n $pid && $(proc_start "$pid") == "$start" && -n $start ]]
}

recorded_pid() { local pid start; read -r pid start <"$PIDS/$1"; echo "$pid"; }

# stop NAME [SECONDS]: SIGTERM the recorded process, SIGKILL after SECONDS (default 10).
stop() {
  local name=$1 wait=${2:-10} pid i
  alive "$name" || { rm -f "$PIDS/$name"; return 0; }
  pid=$(recorded_pid "$name")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait * 10; i++)); do
    alive "$name" || break
    sleep 0.1
  done
  if alive "$name"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$PIDS/$name"
}

# kubectl_ ARGS: kubectl of the built release against this cluster.
kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# read_slot: reads the slot of an existing state directory (0 when unknown).
read_slot() {
  local s=0
  [[ -r $STATE/slot ]] && read -r s <"$STATE/slot"
  [[ $s =~ ^[0-9]$ ]] || s=0
  set_slot "$s"
}

read_nodes() {
  NODES=1
  [[ -r $STATE/nodes ]] && read -r NODES <"$STATE/nodes"
  [[ $NODES =~ ^[12]$ ]] || NODES=1
}
