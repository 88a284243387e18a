#!/usr/bin/env bash
# Run the test suite against real Spark and a real MariaDB/MySQL.
#   bash scripts/test.sh                 the default suite (slow soak/fault tests excluded)
#   bash scripts/test.sh -m slow         only the slow ones; any pytest arguments work
# The database is 127.0.0.1:3306 as root by default; point elsewhere with TEST_MYSQL_HOST,
# TEST_MYSQL_PORT, TEST_MYSQL_USER, TEST_MYSQL_PASSWORD. Each test gets its own database,
# folders and ports, so the tests run in TEST_WORKERS processes (2 unless set; 0 for one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --for-tests
host=${TEST_MYSQL_HOST:-127.0.0.1}
if [[ "$host" == 127.* || "$host" == localhost ]] && command -v mariadbd >/dev/null \
   && ! (echo > "/dev/tcp/127.0.0.1/${TEST_MYSQL_PORT:-3306}") 2>/dev/null; then
  echo "[test] starting the local MariaDB server"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)" >/dev/null
  for _ in $(seq 30); do (echo > "/dev/tcp/127.0.0.1/${TEST_MYSQL_PORT:-3306}") 2>/dev/null && break; sleep 1; done
fi
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist worksteal "$@"
