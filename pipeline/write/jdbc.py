"""JDBC URL construction: one TLS setting, translated into each driver's own option names.

Drivers silently ignore options they do not know (MariaDB Connector/J 2.7 ignores
`sslMode=VERIFY_CA` and connects in plain text), so each family gets exactly its own names,
and the sink still checks after connecting that the session really is encrypted.
Credentials never go into the URL: they are passed as connection properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import MySQLSettings
from pipeline.config import is_tls_option
from pipeline.config import parse_url_options

MARIADB_DRIVER = "org.mariadb.jdbc.Driver"
MYSQL_DRIVERS = ("com.mysql.cj.jdbc.Driver", "com.mysql.jdbc.Driver")
# The converted trust store holds only the public CA certificates: nothing secret to protect.
TRUSTSTORE_PASSWORD = "public-ca-only"
# Older MySQL Connector/J releases do not know sslMode and silently ignore it (plain text).
MYSQL_MIN_VERSION = (8, 0, 13)
# Older MariaDB Connector/J releases never check the host name in the server's certificate.
MARIADB_MIN_VERSION = (2, 1)


def version_numbers(text: str | None) -> tuple[int, ...] | None:
    """(8, 0, 33) from "8.0.33" or "8.0.33-SNAPSHOT"; None when it does not start so."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return tuple(int(n) for n in match.groups() if n is not None)


@dataclass(frozen=True)
class DriverInfo:
    """Which driver is loaded: decides the option names, and whether it can be trusted."""

    class_name: str
    major_version: int
    minor_version: int = 0
    # As the jar declares it (MySQL's Constants.CJ_VERSION, else the manifest); "" if unknown.
    full_version: str = ""

    @property
    def family(self) -> str:
        if self.class_name in MYSQL_DRIVERS:
            return "mysql"
        if self.class_name == MARIADB_DRIVER:
            return "mariadb3" if self.major_version >= 3 else "mariadb2"
        return "unknown"

    @property
    def version(self) -> tuple[int, ...]:
        return version_numbers(self.full_version) or (self.major_version, self.minor_version)

    @property
    def label(self) -> str:
        """"MySQL Connector/J 8.0.33", for the log: which driver a job really runs."""
        vendor = {"mysql": "MySQL Connector/J", "mariadb2": "MariaDB Connector/J",
                  "mariadb3": "MariaDB Connector/J"}.get(self.family, self.class_name)
        return f"{vendor} {'.'.join(map(str, self.version))}"


def unsupported_driver(driver: DriverInfo) -> str | None:
    """Why this driver cannot be trusted to do what MYSQL_SSL_MODE says; None when it can."""
    shown = ".".join(map(str, driver.version))
    if driver.family == "unknown":
        return (f"JDBC_DRIVER_CLASS={driver.class_name} is not a driver this job knows how to"
                f" configure for TLS; use {MARIADB_DRIVER} or {MYSQL_DRIVERS[0]}")
    if driver.family == "mysql":
        wanted = ".".join(map(str, MYSQL_MIN_VERSION))
        if driver.version < MYSQL_MIN_VERSION[:len(driver.version)]:
            return (f"MySQL Connector/J {shown} is older than {wanted}: it ignores sslMode and"
                    f" would connect without the TLS that MYSQL_SSL_MODE asks for; use"
                    f" {wanted} or later (or MariaDB Connector/J)")
        if len(driver.version) < 3 and driver.version[:2] == MYSQL_MIN_VERSION[:2]:
            # 8.0 with no patch level: 8.0.0 to 8.0.12 would ignore sslMode.
            return (f"MySQL Connector/J {shown}.x declares no full version, so it may be older"
                    f" than {wanted} (which ignores sslMode); use a release jar of {wanted} or"
                    " later")
        return None
    if driver.version[:2] < MARIADB_MIN_VERSION:
        return (f"MariaDB Connector/J {shown} is older than 2.1: it does not check the host name"
                " in the server's certificate; use 2.1 or later")
    return None


# mode -> options, per driver family (names checked against each driver's documentation).
_TLS_OPTIONS = {
    "mariadb2": {
        "DISABLED": {"useSsl": "false"},
        "REQUIRED": {"useSsl": "true", "trustServerCertificate": "true"},
        "VERIFY_CA": {"useSsl": "true", "disableSslHostnameVerification": "true"},
        "VERIFY_IDENTITY": {"useSsl": "true"},
    },
    "mariadb3": {
        "DISABLED": {"sslMode": "disable"},
        "REQUIRED": {"sslMode": "trust"},
        "VERIFY_CA": {"sslMode": "verify-ca"},
        "VERIFY_IDENTITY": {"sslMode": "verify-full"},
    },
    "mysql": {mode: {"sslMode": mode} for mode in
              ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")},
}

# Every statement of a micro-batch goes in one round trip (allowMultiQueries); affected-row
# counts must report an unchanged duplicate as 0, not as "found" (useAffectedRows).
_COMMON_OPTIONS = {"allowMultiQueries": "true", "useAffectedRows": "true"}
# MariaDB Connector/J 3 answers only jdbc:mariadb: URLs unless told otherwise.
_FAMILY_OPTIONS = {"mariadb3": {"permitMysqlScheme": "true"}}


def tls_options(mysql: MySQLSettings, driver: DriverInfo, truststore_url: str | None = None
                ) -> dict[str, str]:
    """Driver options that implement `mysql.ssl_mode` with `mysql.ssl_ca`."""
    if driver.family == "unknown":
        raise ValueError(
            f"JDBC_DRIVER_CLASS={driver.class_name} is not a driver this job knows how to"
            f" configure for TLS; use {MARIADB_DRIVER} or {MYSQL_DRIVERS[0]}"
        )
    options = dict(_TLS_OPTIONS[driver.family][mysql.ssl_mode])
    if mysql.ssl_mode in ("VERIFY_CA", "VERIFY_IDENTITY") and mysql.ssl_ca:
        if driver.family == "mysql":
            # MySQL Connector/J reads only key stores, not PEM: the sink converts the PEM first.
            if truststore_url is None:
                raise ValueError("MySQL Connector/J needs the CA as a trust store URL")
            options["trustCertificateKeyStoreUrl"] = truststore_url
            options["trustCertificateKeyStoreType"] = "PKCS12"
            options["trustCertificateKeyStorePassword"] = TRUSTSTORE_PASSWORD
        else:
            # Loads every certificate in the file, so Aiven's two-CA rotation bundle works.
            options["serverSslCert"] = str(mysql.ssl_ca)
    return options


def build_url(mysql: MySQLSettings, driver: DriverInfo, extra_options: str = "",
              truststore_url: str | None = None, bulk_load: bool = False) -> str:
    """The JDBC URL (no credentials). `jdbc:mysql:` so Spark applies its MySQL dialect.

    `bulk_load` lets the driver answer LOAD DATA LOCAL with a stream the sink hands it
    (allowLocalInfile for MariaDB's, allowLoadLocalInfile for MySQL's). Off, the option is
    set to false explicitly: MariaDB Connector/J 2.7 allows it by default.

    `extra_options` (JDBC_URL_OPTIONS, already checked by the configuration) come first and
    lose to the job's own options whatever their case: a driver may read either occurrence.
    """
    options = dict(_COMMON_OPTIONS)
    options.update(_FAMILY_OPTIONS.get(driver.family, {}))
    if driver.family.startswith("mariadb"):
        options["allowLocalInfile"] = "true" if bulk_load else "false"
    elif driver.family == "mysql":
        # Only allowLoadLocalInfile lets MySQL's driver send a stream (allowLoadLocalInfileInPath
        # makes it open the named file instead); the server it goes to is one TLS verified,
        # or on loopback (config.py).
        options["allowLoadLocalInfile"] = "true" if bulk_load else "false"
    options["connectTimeout"] = str(mysql.connect_timeout_s * 1000)
    options["socketTimeout"] = str(mysql.socket_timeout_s * 1000)
    options.update(tls_options(mysql, driver, truststore_url))
    extra = parse_url_options(extra_options)
    tls = [key for key in extra if is_tls_option(key)]
    if tls:
        raise ValueError(f"TLS options are not accepted from JDBC_URL_OPTIONS: {', '.join(tls)}")
    owned = {key.lower() for key in options}
    pairs = [(k, v) for k, v in extra.items() if k.lower() not in owned] + list(options.items())
    query = "&".join(f"{key}={value}" for key, value in pairs)
    host = f"[{mysql.host}]" if ":" in mysql.host else mysql.host
    return f"jdbc:mysql://{host}:{mysql.port}/{mysql.database}?{query}"
