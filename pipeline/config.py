"""Typed settings from the environment and `.env`, validated once at start.

Precedence: command-line flags > real environment > `.env` file > defaults. Every problem is
collected and reported together, so a user fixes a bad configuration in one go.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from dotenv import dotenv_values

from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.errors import ConfigError

SSL_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# Modes that do not prove who the server is: only for loopback, or with this explicit opt-in.
UNVERIFIED_MODES = ("DISABLED", "REQUIRED")
ALLOW_UNVERIFIED = "MYSQL_ALLOW_UNVERIFIED_TLS"
DEFAULT_DRIVER_CLASS = "org.mariadb.jdbc.Driver"
# Where the set-up step puts Debian's MariaDB Connector/J; also found in place if installed.
SYSTEM_DRIVER_JAR = Path("/usr/share/java/mariadb-java-client.jar")
# Master URLs Spark 4 parses (SparkContext.createTaskScheduler); anything else fails when
# the session starts, with a JVM stack trace instead of one line.
_SPARK_MASTER = re.compile(r"local(\[(\*|[1-9][0-9]*)(\s*,\s*[0-9]+)?\])?"
                           r"|local-cluster\[\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*\]"
                           r"|spark://\S+|k8s://\S+|yarn")


def _is_loopback_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_local_host(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address, so plain text never
    leaves the machine. Decided from the addresses, never from the name: `127.evil.example`
    is whatever its DNS says. A name that does not resolve is not local."""
    if not host:
        return False
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None,
                                                               proto=socket.IPPROTO_TCP)}
        return bool(addresses) and all(_is_loopback_address(a) for a in addresses)
    except (OSError, UnicodeError, ValueError):
        return False


# TLS is set only by MYSQL_SSL_MODE and MYSQL_SSL_CA: a driver option in JDBC_URL_OPTIONS could
# quietly weaken it. A key containing one of these words is a TLS option of MariaDB
# Connector/J 2.x or 3.x or MySQL Connector/J (useSsl, sslMode, requireSSL, serverSslCert,
# trustServerCertificate, verifyServerCertificate, disableSslHostnameVerification, trustStore*,
# keyStore*, trustCertificateKeyStore*, clientCertificateKeyStore*, fallbackToSystemTrustStore,
# enabledSslProtocolSuites, enabledTLSProtocols, tlsVersions, tlsSocketType, xdevapi.ssl-mode...).
_TLS_KEY_PARTS = ("ssl", "tls", "cert", "truststore", "keystore", "cipher")
_TLS_KEYS = ("keypassword", "keymanagerfactoryprovider", "trustmanagerfactoryprovider",
             "fipscompliantjsse")
# Options the job sets itself (pipeline/write/jdbc.py), and where to change them instead.
_JOB_KEYS = {
    "user": "MYSQL_USER", "password": "MYSQL_PASSWORD", "password1": "MYSQL_PASSWORD",
    "password2": "MYSQL_PASSWORD", "password3": "MYSQL_PASSWORD",
    "connecttimeout": "MYSQL_CONNECT_TIMEOUT_SECONDS",
    "sockettimeout": "MYSQL_SOCKET_TIMEOUT_SECONDS",
    "allowlocalinfile": "MYSQL_BULK_LOAD", "allowloadlocalinfile": "MYSQL_BULK_LOAD",
    "allowloadlocalinfileinpath": "MYSQL_BULK_LOAD", "allowurlinlocalinfile": "MYSQL_BULK_LOAD",
    "allowmultiqueries": None, "useaffectedrows": None, "permitmysqlscheme": None,
    # A class that rewrites the other options, TLS ones included.
    "propertiestransform": None,
}
# Options of either driver that would weaken security or exactly-once, and why.
_UNSAFE_KEYS = {
    "allowpublickeyretrieval": "it lets the server hand over an unverified key that the"
                               " password is then encrypted with",
    "autodeserialize": "it makes the driver run Java deserialization on what the server sends",
    "socketfactory": "another socket implementation can bypass the driver's TLS",
    "authenticationplugins": "it can enable plugins that send the password in clear",
    "defaultauthenticationplugin": "it can choose a plugin that sends the password in clear",
    "disabledauthenticationplugins": "the driver's own set of plugins is the one checked",
    "autoreconnect": "a silent reconnect in the middle of a batch would commit half of it",
    "autoreconnectforpools": "a silent reconnect in the middle of a batch would commit half of"
                             " it",
    "queryinterceptors": "a class that rewrites statements breaks the batch transaction",
    "statementinterceptors": "a class that rewrites statements breaks the batch transaction",
    "connectionlifecycleinterceptors": "a class that sees commits can change them",
    "exceptioninterceptors": "a class that rewrites errors hides what went wrong",
    "traceprotocol": "it writes the protocol's packets, data and all, to the driver's log",
    "enablepacketdebug": "it keeps the protocol's packets, data and all, for the log",
    "profilesql": "it writes every statement, data and all, to the driver's log",
    "autogeneratetestcasescript": "it writes every statement, data and all, to the log",
}
_OPTION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def is_tls_option(key: str) -> bool:
    lowered = key.lower()
    return lowered in _TLS_KEYS or any(part in lowered for part in _TLS_KEY_PARTS)


def parse_url_options(text: str) -> dict[str, str]:
    """`key=value&key=value` (a leading `?` allowed) in order; ValueError on a malformed pair."""
    options: dict[str, str] = {}
    seen: set[str] = set()
    for pair in text.strip().lstrip("?").split("&"):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not _OPTION_KEY.fullmatch(key) or not value or value != value.strip():
            raise ValueError(f"{pair!r} is not key=value")
        if key.lower() in seen:
            raise ValueError(f"{key} is given twice")
        seen.add(key.lower())
        options[key] = value
    return options


def url_option_problems(options: dict[str, str]) -> list[str]:
    """Why each refused key of JDBC_URL_OPTIONS is refused (nothing when all are fine)."""
    problems = []
    tls = [key for key in options if is_tls_option(key)]
    if tls:
        problems.append(f"JDBC_URL_OPTIONS may not set {', '.join(tls)}: TLS is set only by"
                        " MYSQL_SSL_MODE and MYSQL_SSL_CA (see docs/security.md)")
    for key in options:
        if key.lower() in _UNSAFE_KEYS:
            problems.append(f"JDBC_URL_OPTIONS may not set {key}: {_UNSAFE_KEYS[key.lower()]}"
                            " (docs/security.md)")
        if key.lower() in _JOB_KEYS:
            instead = _JOB_KEYS[key.lower()]
            problems.append(f"JDBC_URL_OPTIONS may not set {key}: "
                            + (f"use {instead}" if instead else "the job sets it itself"))
    return problems


@dataclass(frozen=True)
class MySQLSettings:
    """How to reach the database. The password is kept out of repr and str."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    ssl_mode: str
    ssl_ca: Path | None
    connect_timeout_s: int = 10
    socket_timeout_s: int = 120

    def __str__(self) -> str:
        ca = f", ca={self.ssl_ca}" if self.ssl_ca else ""
        return f"{self.user}@{self.host}:{self.port}/{self.database} (tls={self.ssl_mode}{ca})"


@dataclass(frozen=True)
class RetrySettings:
    """Bounded exponential backoff for transient database failures."""

    max_attempts: int = 8
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): the doubling
        pause, capped, less up to half of it at random (`draw` gives 0..1), so jobs
        that lost the same server do not all come back in the same second."""
        pause = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return pause * (0.5 + 0.5 * draw())


@dataclass(frozen=True)
class Settings:
    """Everything the streaming job needs, resolved and checked."""

    mysql: MySQLSettings
    driver_jar: Path
    driver_class: str
    jdbc_extra_options: str  # checked key=value pairs joined by '&', no TLS or job-owned key
    event_types: tuple[str, ...]
    source_time_zone: str
    retry: RetrySettings
    spark_master: str | None
    bulk_load: bool = True  # MYSQL_BULK_LOAD: big batches through LOAD DATA LOCAL if allowed
    # Read-only account of status, chart and reconcile (created by setup_db); "" = not set up.
    report_user: str = ""
    report_password: str = field(default="", repr=False)

    def describe(self) -> list[str]:
        """Effective configuration as printable lines, secrets masked."""
        return [
            f"database        {self.mysql}",
            f"password        {'set (hidden)' if self.mysql.password else 'empty'}",
            f"jdbc driver     {self.driver_class} from {self.driver_jar}",
            f"event types     {', '.join(self.event_types)}",
            f"source tz       {self.source_time_zone}",
            f"retries         {self.retry.max_attempts} attempts, backoff "
            f"{self.retry.backoff_s:g}s doubling to {self.retry.backoff_max_s:g}s",
            "bulk load       " + ("auto (LOAD DATA LOCAL when the server allows it)"
                                      if self.bulk_load else "off"),
        ]


def project_dir() -> Path:
    """Where `.env` and `jars/` are looked for: the folder the command is started in (the
    checkout, for the scripts and the demo), as for --source and --checkpoint."""
    return Path.cwd()


def env_file_path() -> Path:
    return Path(os.environ.get("PIPELINE_ENV_FILE", project_dir() / ".env"))


def load_environment(env_file: Path | None = None) -> dict[str, str]:
    """Merge `.env` (if present) under the real environment, which wins."""
    path = env_file or env_file_path()
    values = ({k: v for k, v in dotenv_values(path).items() if v is not None}
              if path.exists() else {})
    values.update(os.environ)
    return values


class _Reader:
    """Reads typed values from a mapping and remembers every problem."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str:
        value = self.env.get(name, "").strip()
        if value:
            return value
        if default is None:
            self.problems.append(f"{name} is not set")
            return ""
        return default

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.env.get(name, "").strip().lower() or default
        if value not in allowed:
            self.problems.append(f"{name}={value!r} must be one of {', '.join(allowed)}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a whole number")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}={value} is outside {low}..{high}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a number")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}={value:g} is outside {low:g}..{high:g}")
        return value


def _resolve_ssl(reader: _Reader, host: str) -> tuple[str, Path | None]:
    local = is_local_host(host)
    mode = reader.text("MYSQL_SSL_MODE", "DISABLED" if local else "VERIFY_IDENTITY").upper()
    allow_unverified = reader.choice(ALLOW_UNVERIFIED, ("no", "yes"), "no") == "yes"
    if mode not in SSL_MODES:
        reader.problems.append(f"MYSQL_SSL_MODE={mode!r} must be one of {', '.join(SSL_MODES)}")
        return mode, None
    if mode in UNVERIFIED_MODES and not local and not allow_unverified:
        risk = ("in plain text" if mode == "DISABLED" else
                "encrypted, but to a server whose certificate nobody checks")
        reader.problems.append(
            f"MYSQL_SSL_MODE={mode} towards {host}, which is not a loopback address, would send"
            f" the password and the data {risk}: use VERIFY_IDENTITY (or VERIFY_CA) with"
            f" MYSQL_SSL_CA, or accept that risk explicitly with {ALLOW_UNVERIFIED}=yes")
    ca_raw = reader.env.get("MYSQL_SSL_CA", "").strip()
    ca = Path(ca_raw).expanduser().resolve() if ca_raw else None
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
        if ca is None:
            reader.problems.append(
                f"MYSQL_SSL_MODE={mode} needs MYSQL_SSL_CA, the CA certificate (PEM) of the server"
                " (Aiven: the service's ca.pem)"
                + ("" if not local or "MYSQL_SSL_MODE" in reader.env else
                   "; or set MYSQL_SSL_MODE=DISABLED for a local server")
            )
        elif not ca.is_file():
            reader.problems.append(f"MYSQL_SSL_CA={ca} does not exist or is not a file")
    return mode, ca


def _resolve_driver_jar(reader: _Reader) -> Path:
    configured = reader.env.get("JDBC_DRIVER_JAR", "").strip()
    if configured:
        jar = Path(configured).expanduser().resolve()
        if not jar.is_file():
            reader.problems.append(f"JDBC_DRIVER_JAR={jar} does not exist")
        return jar
    found = sorted(glob.glob(str(project_dir() / "jars" / "*.jar")))
    if found:
        return Path(found[0])
    if SYSTEM_DRIVER_JAR.is_file():
        return SYSTEM_DRIVER_JAR
    reader.problems.append(
        "no JDBC driver jar found: run `bash scripts/setup.sh` (puts MariaDB Connector/J in jars/),"
        " or put a driver jar in jars/ or set JDBC_DRIVER_JAR (and JDBC_DRIVER_CLASS)"
    )
    return project_dir() / "jars" / "missing.jar"


def time_zone_problem(name: str) -> str | None:
    """Why EVENT_TIME_ZONE=`name` cannot be used (None when it can).

    The rules (pipeline.validate.rules) take UTC in any case and look every other name up
    with ZoneInfo only when a time without an offset arrives: a name ZoneInfo does not know
    would fail that batch, and every restart, so it is looked up here, the same way, at start.
    """
    if name.upper() == "UTC":
        return None
    try:
        ZoneInfo(name)
        return None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return (f"EVENT_TIME_ZONE={name!r} is not a time zone this machine knows: use an IANA"
                " name such as Europe/Berlin or America/New_York (case matters), UTC, or"
                " Etc/GMT-2 for a fixed UTC+2 (the Etc/ sign is inverted)")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise ConfigError listing every problem."""
    reader = _Reader(load_environment() if env is None else env)
    host = reader.text("MYSQL_HOST", "127.0.0.1")
    ssl_mode, ssl_ca = _resolve_ssl(reader, host)
    mysql = MySQLSettings(
        host=host,
        port=reader.integer("MYSQL_PORT", 3306, 1, 65535),
        database=reader.text("MYSQL_DATABASE"),
        user=reader.text("MYSQL_USER"),
        password=reader.env.get("MYSQL_PASSWORD", ""),
        ssl_mode=ssl_mode,
        ssl_ca=ssl_ca,
        connect_timeout_s=reader.integer("MYSQL_CONNECT_TIMEOUT_SECONDS", 10, 1, 600),
        socket_timeout_s=reader.integer("MYSQL_SOCKET_TIMEOUT_SECONDS", 120, 1, 3600),
    )
    if mysql.database and not mysql.database.replace("_", "").replace("$", "").isalnum():
        reader.problems.append(f"MYSQL_DATABASE={mysql.database!r}: use letters, digits, _ and $")
    event_types = tuple(
        t.strip() for t in reader.text("EVENT_TYPES", ",".join(DEFAULT_EVENT_TYPES)).split(",")
        if t.strip()
    )
    if not event_types:
        reader.problems.append("EVENT_TYPES lists no type: every row would be rejected")
    if any(len(t) > 32 for t in event_types):
        reader.problems.append("EVENT_TYPES: each type must be at most 32 characters")
    time_zone = reader.text("EVENT_TIME_ZONE", "UTC")
    zone_problem = time_zone_problem(time_zone)
    if zone_problem:
        reader.problems.append(zone_problem)
    spark_master = reader.env.get("SPARK_MASTER", "").strip() or None
    if spark_master and not _SPARK_MASTER.fullmatch(spark_master):
        reader.problems.append(f"SPARK_MASTER={spark_master!r} is not a Spark master URL: use"
                               " local[*], local[N], spark://HOST:PORT, yarn or k8s://...")
    try:
        url_options = parse_url_options(reader.env.get("JDBC_URL_OPTIONS", ""))
    except ValueError as e:
        reader.problems.append(f"JDBC_URL_OPTIONS must be key=value pairs joined by '&': {e}")
        url_options = {}
    reader.problems.extend(url_option_problems(url_options))
    report_user = reader.env.get("MYSQL_REPORT_USER", "").strip()
    report_password = reader.env.get("MYSQL_REPORT_PASSWORD", "")
    if report_user and report_user == mysql.user:
        reader.problems.append("MYSQL_REPORT_USER must differ from MYSQL_USER: the reporting"
                               " account only reads")
    if report_user and not report_password:
        reader.problems.append("MYSQL_REPORT_PASSWORD is not set (MYSQL_REPORT_USER is)")
    settings = Settings(
        mysql=mysql,
        driver_jar=_resolve_driver_jar(reader),
        driver_class=reader.text("JDBC_DRIVER_CLASS", DEFAULT_DRIVER_CLASS),
        jdbc_extra_options="&".join(f"{k}={v}" for k, v in url_options.items()),
        event_types=event_types,
        source_time_zone=time_zone,
        retry=RetrySettings(
            max_attempts=reader.integer("MYSQL_RETRY_ATTEMPTS", 8, 1, 1000),
            backoff_s=reader.number("MYSQL_RETRY_BACKOFF_SECONDS", 1.0, 0.0, 600.0),
            backoff_max_s=reader.number("MYSQL_RETRY_BACKOFF_MAX_SECONDS", 30.0, 0.0, 3600.0),
        ),
        spark_master=spark_master,
        bulk_load=reader.choice("MYSQL_BULK_LOAD", ("auto", "off"), "auto") == "auto",
        report_user=report_user,
        report_password=report_password,
    )
    if reader.problems:
        raise ConfigError(
            "configuration problems (environment or .env):\n  - " + "\n  - ".join(reader.problems)
        )
    return settings
