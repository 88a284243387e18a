#!/usr/bin/env bash
# A Spark standalone cluster on this machine, from the venv's pyspark (loopback only).
#   bash scripts/cluster.sh start [WORKERS]   master on spark://127.0.0.1:7077 (UI :8080) + workers
#   bash scripts/cluster.sh stop              stop them (by the pids recorded at start)
#   bash scripts/cluster.sh status
# Settings: SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8080), WORKER_CORES (1),
# WORKER_MEMORY (1g), CLUSTER_DIR (cluster/: pids, logs, work dirs).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${CLUSTER_DIR:-cluster}
PORT=${SPARK_MASTER_PORT:-7077}
UI=${SPARK_MASTER_WEBUI_PORT:-8080}
CLASS=${SPARK_CLASS:-.venv/bin/spark-class}
MASTER_URL="spark://127.0.0.1:${PORT}"
export SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
# pip's pyspark is a complete Spark; say where, rather than let spark-class guess via python3.
SPARK_HOME=${SPARK_HOME:-$(.venv/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export SPARK_HOME

launch() {  # name, then the spark-class arguments
  local name=$1; shift
  nohup "$CLASS" "$@" > "$DIR/$name.log" 2>&1 &
  echo $! > "$DIR/$name.pid"
}

wait_for_log() {  # file, text, seconds
  for _ in $(seq "$3"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 1; done
  echo "[cluster] timed out waiting for '$2' in $1" >&2; tail -n 20 "$1" >&2; return 1
}

case "${1:-}" in
  start)
    workers=${2:-1}
    mkdir -p "$DIR"
    [ -f "$DIR/master.pid" ] && kill -0 "$(cat "$DIR/master.pid")" 2>/dev/null \
      && { echo "[cluster] already running: $MASTER_URL"; exit 0; }
    launch master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" \
      --webui-port "$UI"
    wait_for_log "$DIR/master.log" "I have been elected leader" 60
    for i in $(seq "$workers"); do
      mkdir -p "$DIR/work-$i"
      launch "worker-$i" org.apache.spark.deploy.worker.Worker "$MASTER_URL" --host 127.0.0.1 \
        --cores "${WORKER_CORES:-1}" --memory "${WORKER_MEMORY:-1g}" \
        --webui-port $((UI + i)) --work-dir "$DIR/work-$i"
    done
    for i in $(seq "$workers"); do
      wait_for_log "$DIR/worker-$i.log" "Successfully registered with master" 60
    done
    echo "[cluster] $MASTER_URL with $workers worker(s); UI http://127.0.0.1:$UI"
    ;;
  stop)
    for pidfile in "$DIR"/worker-*.pid "$DIR"/master.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      fi
      rm -f "$pidfile"
    done
    echo "[cluster] stopped"
    ;;
  status)
    for pidfile in "$DIR"/*.pid; do
      [ -f "$pidfile" ] || continue
      name=$(basename "$pidfile" .pid)
      kill -0 "$(cat "$pidfile")" 2>/dev/null && echo "$name running (pid $(cat "$pidfile"))" \
        || echo "$name not running"
    done
    ;;
  *) echo "usage: $0 start [WORKERS] | stop | status" >&2; exit 2 ;;
esac
