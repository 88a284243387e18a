#!/usr/bin/env bash
# The whole pipeline on this machine: set-up, then generator + streaming job, rows landing.
# Ctrl-C stops both cleanly (the job finishes the batch in flight).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-db
PY=.venv/bin/python

mkdir -p streaming_data checkpoints
echo "[demo] generator: 21 events every ${DEMO_INTERVAL:-20}s into streaming_data/"
$PY data_generator.py --interval "${DEMO_INTERVAL:-20}" &
gen=$!
echo "[demo] streaming job (Spark UI on http://127.0.0.1:4040, loopback only); logs in checkpoints/job.log"
# Files left from an earlier run are a backlog: take them 100 at a time.
$PY spark_streaming.py --catch-up-files 100 > checkpoints/job.log 2>&1 &
job=$!

stop() {
  trap - INT TERM
  echo; echo "[demo] stopping generator and job..."
  kill -TERM "$gen" "$job" 2>/dev/null || true
  wait "$gen" 2>/dev/null || true
  wait "$job" 2>/dev/null || true
  tail -n 3 checkpoints/job.log
  exit 0
}
trap stop INT TERM

while kill -0 "$job" 2>/dev/null; do
  sleep 10
  $PY -m pipeline.ops.status --brief 2>/dev/null || echo "[demo] waiting for the first batch..."
done
echo "[demo] the job stopped; its log:"; tail -n 20 checkpoints/job.log
kill -TERM "$gen" 2>/dev/null || true
exit 1
