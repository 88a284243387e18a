"""One JDBC connection to MySQL/MariaDB on the driver: the driver class loaded (from the
classpath or the configured jar, too-old drivers refused), TLS set up per driver family and
proven after connecting, the session prepared, and the driver's errors classified.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from py4j.java_gateway import is_instance_of
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from pipeline.config import Settings
from pipeline.errors import DatabaseUnreachable
from pipeline.errors import SinkError
from pipeline.write.jdbc import TRUSTSTORE_PASSWORD
from pipeline.write.jdbc import DriverInfo
from pipeline.write.jdbc import build_url
from pipeline.write.jdbc import unsupported_driver
from pipeline.write.jdbc import version_numbers

DUPLICATE_KEY = 1062
# Warnings the server lists per statement (its maximum for max_error_count).
MAX_WARNINGS = 65535
# SQLSTATE classes and MySQL error codes worth another attempt after a pause.
_TRANSIENT_STATES = ("08", "40", "HYT")
_TRANSIENT_CODES = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013}
_TRANSIENT_CLASSES = ("SQLTransient", "SQLRecoverable", "SQLNonTransientConnection",
                      "CommunicationsException", "SocketTimeout", "ConnectException")
_TOO_LARGE_CODES = {1153, 1301}
# Errors caused by the data itself: SQLSTATE classes 22 (data exception) and 23 (integrity
# constraint; a duplicate key is handled before), and 45000, raised by a trigger's SIGNAL.
# Any other error (a missing table, a revoked grant, a full disk) is the environment's: it
# must stop the job, not quarantine good files.
_DATA_STATES = ("22", "23", "45000")
# Driver classes loaded from a jar, per JVM: py4j caches reflection by class name, so a second
# class loader for the same jar would hand it methods of the wrong class.
_LOADED_DRIVER_CLASSES: dict[tuple[int, str, str], object] = {}


def java_sql_error(exc: Py4JJavaError, gateway) -> tuple[str, int, str, str]:
    """(SQLSTATE, vendor code, message, class name) of the first SQLException in the chain."""
    current = exc.java_exception
    while current is not None:
        if is_instance_of(gateway, current, "java.sql.SQLException"):
            return (current.getSQLState() or "", current.getErrorCode(),
                    str(current.getMessage()), current.getClass().getName())
        current = current.getCause()
    top = exc.java_exception
    return "", 0, str(top.getMessage()), top.getClass().getName()


def cause_messages(exc: Py4JJavaError) -> str:
    """Every message down the Java cause chain, one a line: MySQL Connector/J says only
    "Communications link failure" on top and puts the reason (refused, PKIX...) below."""
    messages, current = [], exc.java_exception
    while current is not None and len(messages) < 10:
        messages.append(f"{current.getClass().getName()}: {current.getMessage()}")
        current = current.getCause()
    return "\n".join(messages)


def is_too_large(code: int, message: str) -> bool:
    """A statement over max_allowed_packet: the server (1153, 1301) or the driver refused it.
    Some drivers close the connection for it, which must not pass for an outage."""
    return code in _TOO_LARGE_CODES or "max_allowed_packet" in message


def is_data_error(state: str, code: int, message: str) -> bool:
    """The server refused these rows themselves: writing them elsewhere would not help."""
    return state.startswith(_DATA_STATES) or is_too_large(code, message)


def is_transient(state: str, code: int, class_name: str) -> bool:
    return (state.startswith(_TRANSIENT_STATES) or code in _TRANSIENT_CODES
            or any(name in class_name for name in _TRANSIENT_CLASSES))


def _server_has_no_tls(lowered: str) -> bool:
    """The drivers' words for a server that cannot speak TLS when TLS was asked for:
    MariaDB's "ssl not enabled in the server", MySQL's "... not supported by server"."""
    return "ssl" in lowered and any(s in lowered for s in (
        "not enabled in the server", "not supported by server", "doesn't support ssl",
        "does not support ssl", "server does not support ssl", "not provided by server"))


def _names_another_host(lowered: str) -> bool:
    """MariaDB's and MySQL's words for a certificate that does not name the host."""
    return any(s in lowered for s in (
        "hostname verification", "doesn't correspond to certificate",
        "no subject alternative names matching", "no subject alternative dns name matching",
        "no name matching", "server identity verification failed"))


# A connect that failed on the way, not for what the server said: worth another attempt.
# MySQL Connector/J says "Communications link failure" for all of them and names the
# reason (a reset, a refusal) in its causes; MariaDB's names it in its own message.
_UNREACHABLE = ("connection refused", "could not connect", "timed out", "socket fail",
                "unknownhost", "too many connections", "connection reset", "broken pipe",
                "communications link failure", "unexpected end of stream")


def explain_connect_failure(message: str, settings: Settings, causes: str = "") -> SinkError:
    """Turn a driver's connect error into advice (the driver never echoes the password);
    `causes` are the messages below it (cause_messages), read for the reason too."""
    m = settings.mysql
    lowered = f"{message}\n{causes}".lower()
    where = f"{m.host}:{m.port}"
    if "access denied" in lowered:
        hint = (f"check MYSQL_USER/MYSQL_PASSWORD and that {m.user} may use database "
                f"{m.database}")
        if m.ssl_mode == "DISABLED":
            hint += "; a server that requires TLS also answers 'Access denied' to plain text:" \
                    " set MYSQL_SSL_MODE"
        return SinkError(f"database refused the login at {where}: {hint}")
    if "unknown database" in lowered:
        return SinkError(f"database {m.database!r} does not exist on {where}: create it"
                         " (scripts/setup.sh or python -m pipeline.ops.setup_db)")
    if _names_another_host(lowered):
        return SinkError(f"TLS: the certificate of {where} does not name host {m.host!r};"
                         " connect by the name in the certificate or use"
                         " MYSQL_SSL_MODE=VERIFY_CA")
    if "pkix" in lowered or ("certificate" in lowered and "verif" not in lowered):
        return SinkError(f"TLS: the certificate of {where} is not signed by"
                         f" MYSQL_SSL_CA={m.ssl_ca} (wrong CA file?)")
    if "serversslcert" in lowered:
        return SinkError(f"TLS: cannot read MYSQL_SSL_CA={m.ssl_ca}")
    if _server_has_no_tls(lowered):
        return SinkError(f"TLS: the server at {where} offers no TLS, but MYSQL_SSL_MODE="
                         f"{m.ssl_mode} asks for it: turn TLS on at the server (ssl_cert,"
                         " ssl_key), or for a server on this machine set MYSQL_SSL_MODE="
                         "DISABLED")
    deepest = causes.splitlines()[-1] if causes.strip() else ""
    because = f" (the cause below it: {deepest})" if deepest and message not in deepest else ""
    first = message.splitlines()[0] if message.strip() else "no message"
    if "handshake" in lowered:
        return SinkError(f"TLS: the handshake with {where} failed: {first}{because}")
    if any(s in lowered for s in _UNREACHABLE):
        return DatabaseUnreachable(f"cannot reach the database at {where}: is it running and"
                                   f" reachable? ({first}{because})")
    return SinkError(f"cannot connect to the database at {where}: {first}{because}")


def load_driver(spark: SparkSession, settings: Settings) -> tuple[object, DriverInfo]:
    """The driver class from the classpath (--jars, --packages) or else from the jar.

    Loading it ourselves from JDBC_DRIVER_JAR means `spark-submit` without `--jars`
    works too: only this driver-side connection uses JDBC, never the executors.
    """
    jvm, gateway = spark._jvm, spark.sparkContext._gateway
    name, jar = settings.driver_class, settings.driver_jar
    lang = jvm.java.lang
    loader = lang.Thread.currentThread().getContextClassLoader()
    try:
        driver_class = lang.Class.forName(name, True, loader)
    except Py4JJavaError:
        if not jar.is_file():
            raise SinkError(f"JDBC driver class {name} not found and JDBC driver jar {jar}"
                            " does not exist: run scripts/setup.sh or set"
                            " JDBC_DRIVER_JAR") from None
        key = (id(gateway), str(jar), name)
        if key not in _LOADED_DRIVER_CLASSES:
            urls = gateway.new_array(jvm.java.net.URL, 1)
            urls[0] = jvm.java.io.File(str(jar)).toURI().toURL()
            jar_loader = jvm.java.net.URLClassLoader(urls, loader)
            try:
                _LOADED_DRIVER_CLASSES[key] = lang.Class.forName(name, True, jar_loader)
            except Py4JJavaError:
                raise SinkError(f"JDBC driver class {name} is not in {jar}: check"
                                " JDBC_DRIVER_CLASS and JDBC_DRIVER_JAR") from None
        driver_class = _LOADED_DRIVER_CLASSES[key]
    # getMajorVersion/getMinorVersion stop at "8.0", which cannot tell 8.0.12 (ignores
    # sslMode) from 8.0.13: MySQL Connector/J compiles its full version into
    # com.mysql.cj.Constants; other jars may declare it in the manifest.
    try:
        constants = driver_class.getClassLoader().loadClass("com.mysql.cj.Constants")
        declared = str(constants.getField("CJ_VERSION").get(None))
    except Py4JJavaError:
        package = driver_class.getPackage()
        declared = str((package.getImplementationVersion() if package else None) or "")
    problem = None
    if version_numbers(declared):
        # A jar that says it is too old is refused before its driver is even instantiated.
        problem = unsupported_driver(DriverInfo(name, 0, 0, declared))
    if problem is None:
        driver = driver_class.newInstance()
        info = DriverInfo(name, driver.getMajorVersion(), driver.getMinorVersion(), declared)
        problem = unsupported_driver(info)
    if problem:
        raise SinkError(problem)
    return driver, info


def mysql_truststore(settings: Settings, driver: DriverInfo, folder: Path) -> str | None:
    """MySQL Connector/J reads no PEM files: convert the CA bundle to a PKCS12 store."""
    m = settings.mysql
    if driver.family != "mysql" or m.ssl_mode not in ("VERIFY_CA",
                                                                "VERIFY_IDENTITY"):
        return None
    store = folder / "ca.p12"
    pem = m.ssl_ca.read_text()
    certs = [c + "-----END CERTIFICATE-----\n" for c in pem.split("-----END CERTIFICATE-----")
             if "BEGIN CERTIFICATE" in c]
    keytool = Path(os.environ.get("JAVA_HOME", "/usr")) / "bin" / "keytool"
    for i, cert in enumerate(certs):
        cert_file = folder / f"ca{i}.pem"
        cert_file.write_text(cert)
        subprocess.run([str(keytool), "-importcert", "-noprompt", "-alias", f"ca{i}",
                        "-file", str(cert_file), "-keystore", str(store), "-storetype",
                        "PKCS12", "-storepass", TRUSTSTORE_PASSWORD],
                       check=True, capture_output=True)
    return f"file:{store}"


class Connection:
    """The job's one JDBC connection (autocommit off); reopened after a failure."""

    def __init__(self, spark: SparkSession, settings: Settings, bulk_load: bool):
        self._jvm = spark._jvm
        self._gateway = spark.sparkContext._gateway
        self._settings = settings
        self._driver, self.driver_info = load_driver(spark, settings)
        # LOAD DATA LOCAL from a stream: both drivers take one (setLocalInfileInputStream).
        self.bulk_load_wanted = bulk_load and self.driver_info.family != "unknown"
        self._truststore_dir = tempfile.TemporaryDirectory(prefix="pipeline-ca-")
        truststore = mysql_truststore(settings, self.driver_info,
                                      Path(self._truststore_dir.name))
        self._url = build_url(settings.mysql, self.driver_info, settings.jdbc_extra_options,
                              truststore, bulk_load=self.bulk_load_wanted)
        self.jdbc = None
        self.tls_version = ""
        self.max_allowed_packet = 4 * 1024 * 1024
        self.local_infile = False

    def open(self) -> None:
        """Connect, prove TLS is really on when asked for, set up the session."""
        self.close()
        props = self._jvm.java.util.Properties()
        props.setProperty("user", self._settings.mysql.user)
        props.setProperty("password", self._settings.mysql.password)
        try:
            conn = self._driver.connect(self._url, props)
            if conn is None:
                raise SinkError(f"driver {self.driver_info.class_name} does not accept the URL")
            conn.setAutoCommit(False)
            self.jdbc = conn
            rows = self.query("SHOW SESSION STATUS LIKE 'Ssl_version'")
            self.tls_version = rows[0][1] if rows else ""
            packet, local_infile = self.query("SELECT @@max_allowed_packet, @@local_infile")[0]
            # Every warning of a LOAD DATA chunk must be readable to tell duplicates from
            # rows the table refused (pipeline.write.streamed, which reloads a bigger unit
            # in halves when it left more warnings than the server lists).
            self.execute("SET time_zone = '+00:00',"
                         " sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION',"
                         f" max_error_count = {MAX_WARNINGS}")
            conn.commit()
        except Py4JJavaError as e:
            self.close()
            _, _, message, _ = java_sql_error(e, self._gateway)
            raise explain_connect_failure(message, self._settings, cause_messages(e)) from None
        if self._settings.mysql.ssl_mode != "DISABLED" and not self.tls_version:
            self.close()
            raise SinkError(
                f"MYSQL_SSL_MODE={self._settings.mysql.ssl_mode} but the session to "
                f"{self._settings.mysql.host} is NOT encrypted (Ssl_version is empty): refusing"
                " to send data in plain text; check the driver's TLS options")
        self.max_allowed_packet = int(packet)
        self.local_infile = str(local_infile).upper() in ("1", "ON")

    @property
    def is_open(self) -> bool:
        return self.jdbc is not None

    def close(self) -> None:
        if self.jdbc is not None:
            try:
                self.jdbc.close()
            except Py4JJavaError:
                pass
            self.jdbc = None

    def sql_error(self, error: Py4JJavaError) -> tuple[str, int, str, str]:
        return java_sql_error(error, self._gateway)

    def input_stream(self, data: bytes):
        return self._jvm.java.io.ByteArrayInputStream(data)

    def rollback_quietly(self) -> None:
        try:
            self.jdbc.rollback()
        except Py4JJavaError:
            self.close()

    def execute(self, sql: str) -> None:
        stmt = self.jdbc.createStatement()
        try:
            stmt.execute(sql)
        finally:
            stmt.close()

    def query(self, sql: str) -> list[tuple]:
        """Rows of a query, every value as text."""
        stmt = self.jdbc.createStatement()
        try:
            rs = stmt.executeQuery(sql)
            width = rs.getMetaData().getColumnCount()
            rows = []
            while rs.next():
                rows.append(tuple(rs.getString(i) for i in range(1, width + 1)))
            return rows
        finally:
            stmt.close()

    def run_script(self, statements: list[str], packet_limit: int) -> tuple[int, int]:
        """Send the statements in as few packets as fit, commit, and return the batch's
        (@batch_written, @batch_duplicate)."""
        statements = [*statements, "COMMIT", "SELECT @batch_written, @batch_duplicate"]
        scripts, current, size = [], [], 0
        for statement in statements:
            if current and size + len(statement) > packet_limit:
                scripts.append(";\n".join(current))
                current, size = [], 0
            current.append(statement)
            size += len(statement) + 2
        scripts.append(";\n".join(current))
        stmt = self.jdbc.createStatement()
        try:
            result: tuple[int, int] = (0, 0)
            for script in scripts:
                has_rows = stmt.execute(script)
                while True:
                    if has_rows:
                        rs = stmt.getResultSet()
                        if rs.next():
                            result = (rs.getLong(1), rs.getLong(2))
                        rs.close()
                    elif stmt.getUpdateCount() == -1:
                        break
                    has_rows = stmt.getMoreResults()
            return result
        finally:
            stmt.close()
