#!/usr/bin/env bash
# Prepare this checkout on a fresh machine; safe to run again (it only does what is missing).
#   bash scripts/setup.sh            Java, project venv (.venv) from requirements.lock, JDBC jar
#   bash scripts/setup.sh --with-db  also: a local MariaDB running, .env, database/tables/user
#   bash scripts/setup.sh --for-tests  the venv from requirements-dev.lock, and the tools only
#                                    the tests use (promtool, Chromium, S3 connector jars)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WITH_DB=0
FOR_TESTS=0
for arg in "$@"; do
  case "$arg" in
    --with-db) WITH_DB=1 ;;
    --for-tests) FOR_TESTS=1 ;;
    *) echo "[setup] unknown option $arg (known: --with-db, --for-tests)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

APT_UPDATED=0
apt_install() {
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "[setup] please install: $*" >&2; exit 1; }
    runner=(sudo)
  fi
  command -v apt-get >/dev/null || { echo "[setup] no apt-get here: please install $*" >&2; exit 1; }
  if [ "$APT_UPDATED" = 0 ]; then "${runner[@]}" apt-get update -qq; APT_UPDATED=1; fi
  say "installing $* (Debian packages)"
  DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq "$@" >/dev/null
}

# The first of these Debian/Ubuntu packages that the release has: Spark 4 needs Java 17+.
jdk_package() {
  local name
  for name in openjdk-17-jre-headless openjdk-21-jre-headless openjdk-25-jre-headless; do
    # Read it whole first: grep -q would close the pipe early and fail it under pipefail.
    if [[ "$(apt-cache policy "$name" 2>/dev/null)" == *"Candidate: "[0-9]* ]]; then
      echo "$name"; return 0
    fi
  done
  echo "[setup] no OpenJDK 17, 21 or 25 package here: install Java 17 or newer" >&2
  return 1
}

# python3 -m venv needs ensurepip, which stock Debian and Ubuntu keep in python3-venv.
venv_ready() { python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }

[ "${SETUP_FUNCTIONS_ONLY:-0}" = 1 ] && return 0 2>/dev/null

# 1. Java 17+ for Spark.
if ! command -v java >/dev/null; then
  [ "$APT_UPDATED" = 0 ] && [ "$(id -u)" -eq 0 ] && { apt-get update -qq; APT_UPDATED=1; }
  apt_install "$(jdk_package)"
fi

# 2. Project-local virtual environment from the lock file, with every package's hash checked:
#    requirements.lock (what the job needs), or requirements-dev.lock with --for-tests (tests
#    and lint too). Installed again only when the lock changes.
lock=requirements.lock
[ "$FOR_TESTS" = 1 ] && lock=requirements-dev.lock
if [ ! -x .venv/bin/python ]; then
  venv_ready || apt_install python3-venv
  say "creating .venv"
  python3 -m venv .venv
fi
want=$(sha256sum "$lock" | cut -d' ' -f1)
have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
# The dev lock holds every runtime package too: a venv made for tests serves the job as it is.
[ "$have" = "$(sha256sum requirements-dev.lock | cut -d' ' -f1)" ] && want=$have
if [ "$want" != "$have" ]; then
  say "installing $lock into .venv (pyspark is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --require-hashes -r "$lock"
  echo "$want" > .venv/.requirements.sha256
fi

# 3. JDBC driver: MariaDB Connector/J from Debian into jars/ (a jar already there is kept).
if ! ls jars/*.jar >/dev/null 2>&1; then
  [ -f /usr/share/java/mariadb-java-client.jar ] || apt_install libmariadb-java
  cp -L /usr/share/java/mariadb-java-client.jar jars/mariadb-java-client.jar
  say "driver jar: jars/mariadb-java-client.jar"
fi

# 4. Test tools: promtool (checks the alert rules and the metrics page) from Debian's
#    prometheus package, unpacked into .venv/bin rather than installed, so no Prometheus
#    server is set up or started on this machine.
if [ "$FOR_TESTS" = 1 ] && [ ! -x .venv/bin/promtool ]; then
  command -v apt-get >/dev/null || { echo "[setup] no apt-get here: put promtool in .venv/bin" >&2; exit 1; }
  [ "$APT_UPDATED" = 0 ] && { apt-get update -qq || sudo apt-get update -qq; APT_UPDATED=1; }
  say "unpacking promtool from Debian's prometheus package into .venv/bin"
  unpack=$(mktemp -d)
  (cd "$unpack" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb root)
  cp "$unpack/root/usr/bin/promtool" .venv/bin/promtool
  rm -rf "$unpack"
fi

# 5. A real browser for the status page's test: Debian's Chromium, headless.
if [ "$FOR_TESTS" = 1 ] && ! command -v chromium >/dev/null; then
  apt_install chromium
fi

# 6. S3 connector jars for the tests only (hadoop-aws 3.3.1 and its AWS SDK bundle), taken
#    from the PyPI source package sagemaker-pyspark 1.4.5 (pip fetches it without building)
#    into jars/s3-test/, not jars/*.jar (the job takes the first of those as its JDBC driver).
#    Production brings the hadoop-aws matching its Spark with --packages (docs/cluster.md).
S3_TEST_JARS=jars/s3-test
declare -A S3_TEST_JAR_SHA256=(
  [hadoop-aws-3.3.1.jar]=6be50ad8a8b445d2802381b085b2a3ede5c29d353450a6a21f16b2fefa962b6e
  [aws-java-sdk-bundle-1.11.901.jar]=b87175b32a16544cc1b37cf40390eb375833e62bed67f8ce6cde4b7ad6429ead
)
s3_jars_ok() {
  local jar
  for jar in "${!S3_TEST_JAR_SHA256[@]}"; do
    echo "${S3_TEST_JAR_SHA256[$jar]}  $S3_TEST_JARS/$jar" | sha256sum --check --status 2>/dev/null || return 1
  done
}
if [ "$FOR_TESTS" = 1 ] && ! s3_jars_ok; then
  say "fetching the S3 test jars (sagemaker-pyspark 1.4.5 source package, about 181 MB)"
  s3_download=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: sagemaker-pyspark==1.4.5 \
    -d "$s3_download"
  mkdir -p "$S3_TEST_JARS"
  for jar in "${!S3_TEST_JAR_SHA256[@]}"; do
    tar -xzf "$s3_download"/sagemaker_pyspark-1.4.5.tar.gz -C "$S3_TEST_JARS" \
      --strip-components=3 "sagemaker_pyspark-1.4.5/deps/jars/$jar"
  done
  rm -rf "$s3_download"
  s3_jars_ok || { echo "[setup] S3 test jars: SHA-256 mismatch in $S3_TEST_JARS" >&2; exit 1; }
  say "S3 test jars: $S3_TEST_JARS/"
fi

# 7. MySQL Connector/J 8.0.33 for the driver matrix's tests only (TEST_JDBC_DRIVER=mysql):
#    MySQL's unmodified jar, carried by the PyPI package wbjdbc 2.4.0, into jars/mysql-test/.
#    Users bring their own (--packages com.mysql:mysql-connector-j:<version> or JDBC_DRIVER_JAR).
MYSQL_TEST_JAR=jars/mysql-test/mysql-connector-j.jar
MYSQL_TEST_JAR_SHA256=e2a3b2fc726a1ac64e998585db86b30fa8bf3f706195b78bb77c5f99bf877bd9
mysql_jar_ok() {
  echo "$MYSQL_TEST_JAR_SHA256  $MYSQL_TEST_JAR" | sha256sum --check --status 2>/dev/null
}
if [ "$FOR_TESTS" = 1 ] && ! mysql_jar_ok; then
  say "fetching MySQL Connector/J 8.0.33 for the tests (PyPI package wbjdbc 2.4.0)"
  mysql_download=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps wbjdbc==2.4.0 -d "$mysql_download"
  mkdir -p "$(dirname "$MYSQL_TEST_JAR")"
  .venv/bin/python -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
    "$mysql_download"/wbjdbc-2.4.0-py3-none-any.whl \
    wbjdbc/resources/maven/mysql/mysql-connector-j-8.0.33.jar > "$MYSQL_TEST_JAR"
  rm -rf "$mysql_download"
  mysql_jar_ok || { echo "[setup] $MYSQL_TEST_JAR: SHA-256 mismatch" >&2; exit 1; }
  say "MySQL Connector/J for the tests: $MYSQL_TEST_JAR"
fi

[ "$WITH_DB" = 1 ] || exit 0

# 8. Configuration: a .env for the local demo with fresh random passwords for the job's and the
#    reporting account. umask 077 in the subshell: the file is private from its first byte.
if [ ! -f .env ]; then
  secret() { .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))'; }
  password=$(secret)
  report_password=$(secret)
  (umask 077 && sed -e "s/^MYSQL_PASSWORD=$/MYSQL_PASSWORD=${password}/" \
                    -e "s/^MYSQL_REPORT_PASSWORD=$/MYSQL_REPORT_PASSWORD=${report_password}/" \
                    .env.example > .env)
  say "wrote .env (local MariaDB; accounts 'pipeline' and 'pipeline_report' with random passwords)"
fi

# 9. A local database server (only when .env points at this machine and none answers). The
#    admin account never goes into .env: the local demo's root (no password, as Debian sets
#    it up) is handed to setup_db in its own environment only. For any other server, setup_db
#    asks for the admin's password (or takes MYSQL_ADMIN_USER/MYSQL_ADMIN_PASSWORD from the
#    environment this script was started with).
if .venv/bin/python -c 'from pipeline.config import load_settings, is_local_host as l; import sys; sys.exit(0 if l(load_settings().mysql.host) else 1)' 2>/dev/null; then
  export MYSQL_ADMIN_USER="${MYSQL_ADMIN_USER:-root}" MYSQL_ADMIN_PASSWORD="${MYSQL_ADMIN_PASSWORD-}"
  if ! .venv/bin/python -m pipeline.ops.setup_db --ping 2>/dev/null; then
    command -v mariadbd >/dev/null || apt_install mariadb-server
    say "starting the local MariaDB server"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)" >/dev/null
  fi
fi
.venv/bin/python -m pipeline.ops.setup_db --wait 60
