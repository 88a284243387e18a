"""JDBC URL construction: one TLS setting, translated into each driver's own option names.

Drivers silently ignore options they do not know (MariaDB Connector/J 2.7 ignores
`sslMode=VERIFY_CA` and connects in plain text), so each family gets exactly its own names,
and the sink still checks after connecting that the session really is encrypted.
Credentials never go into the URL: they are passed as connection properties.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import MySQLSettings

MARIADB_DRIVER = "org.mariadb.jdbc.Driver"
MYSQL_DRIVERS = ("com.mysql.cj.jdbc.Driver", "com.mysql.jdbc.Driver")
# The converted trust store holds only the public CA certificates: nothing secret to protect.
TRUSTSTORE_PASSWORD = "public-ca-only"


@dataclass(frozen=True)
class DriverInfo:
    """Which driver is loaded: decides the option names."""

    class_name: str
    major_version: int

    @property
    def family(self) -> str:
        if self.class_name in MYSQL_DRIVERS:
            return "mysql"
        if self.class_name == MARIADB_DRIVER:
            return "mariadb3" if self.major_version >= 3 else "mariadb2"
        return "unknown"


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

    `bulk_load` lets MariaDB Connector/J answer LOAD DATA LOCAL with a stream the sink hands
    it. Off, the option is set to false explicitly: Connector/J 2.7 allows it by default.
    Even on, the driver sends only that stream, or a file named in the statement itself.
    """
    options = dict(_COMMON_OPTIONS)
    if driver.family.startswith("mariadb"):
        options["allowLocalInfile"] = "true" if bulk_load else "false"
    options["connectTimeout"] = str(mysql.connect_timeout_s * 1000)
    options["socketTimeout"] = str(mysql.socket_timeout_s * 1000)
    options.update(tls_options(mysql, driver, truststore_url))
    query = "&".join(f"{key}={value}" for key, value in options.items())
    if extra_options:
        query += "&" + extra_options
    host = f"[{mysql.host}]" if ":" in mysql.host else mysql.host
    return f"jdbc:mysql://{host}:{mysql.port}/{mysql.database}?{query}"
