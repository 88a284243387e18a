"""Configuration and JDBC option translation: pure functions, no database needed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.config import is_local_host
from pipeline.config import load_settings
from pipeline.write.jdbc import DriverInfo
from pipeline.write.jdbc import build_url
from pipeline.write.jdbc import unsupported_driver

BASE = {"MYSQL_DATABASE": "shop", "MYSQL_USER": "pipeline", "MYSQL_PASSWORD": "s3cret-pw",
        "JDBC_DRIVER_JAR": __file__}
MARIADB2 = DriverInfo("org.mariadb.jdbc.Driver", 2)


def settings(**overrides):
    return load_settings({**BASE, **overrides})


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_settings({"MYSQL_PORT": "abc", "MYSQL_SSL_MODE": "maybe",
                       "JDBC_DRIVER_JAR": "/nope.jar"})
    message = str(e.value)
    for name in ("MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PORT", "MYSQL_SSL_MODE",
                 "JDBC_DRIVER_JAR"):
        assert name in message


def test_password_never_shown():
    s = settings()
    for text in (repr(s), str(s.mysql), repr(s.mysql), "\n".join(s.describe())):
        assert "s3cret-pw" not in text


def test_local_host_defaults_to_plain_remote_host_needs_a_verified_ca(tmp_path):
    assert settings().mysql.ssl_mode == "DISABLED"
    with pytest.raises(ConfigError, match="needs MYSQL_SSL_CA"):
        settings(MYSQL_HOST="mysql-abc.aivencloud.com")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    remote = settings(MYSQL_HOST="mysql-abc.aivencloud.com", MYSQL_SSL_CA=str(ca))
    assert (remote.mysql.ssl_mode, remote.mysql.ssl_ca) == ("VERIFY_IDENTITY", ca)
    explicit = settings(MYSQL_HOST="db.example", MYSQL_SSL_MODE="disabled",
                        MYSQL_ALLOW_UNVERIFIED_TLS="yes")
    assert explicit.mysql.ssl_mode == "DISABLED"


@pytest.mark.parametrize("mode", ["DISABLED", "REQUIRED"])
def test_unverified_tls_towards_another_machine_needs_the_opt_in(mode):
    with pytest.raises(ConfigError) as e:
        settings(MYSQL_HOST="192.0.2.10", MYSQL_SSL_MODE=mode)
    assert str(e.value).count("\n  - ") == 1
    assert f"MYSQL_SSL_MODE={mode} towards 192.0.2.10" in str(e.value)
    assert "MYSQL_ALLOW_UNVERIFIED_TLS=yes" in str(e.value)
    assert settings(MYSQL_HOST="192.0.2.10", MYSQL_SSL_MODE=mode,
                    MYSQL_ALLOW_UNVERIFIED_TLS="YES").mysql.ssl_mode == mode
    with pytest.raises(ConfigError, match="MYSQL_ALLOW_UNVERIFIED_TLS='sure' must be one of"):
        settings(MYSQL_HOST="192.0.2.10", MYSQL_SSL_MODE=mode, MYSQL_ALLOW_UNVERIFIED_TLS="sure")
    # On this machine plain text never leaves it: no opt-in needed.
    for host in ("127.0.0.1", "127.3.4.5", "::1", "localhost", "::ffff:127.0.0.1"):
        assert settings(MYSQL_HOST=host, MYSQL_SSL_MODE=mode).mysql.ssl_mode == mode


def test_loopback_is_decided_from_the_resolved_addresses(monkeypatch):
    answers = {
        "127.evil.example": ["203.0.113.7"],  # the name looks local, the address is not
        "db.lan": ["127.0.0.1", "10.1.2.3"],  # one address off this machine is enough
        "loopback-alias": ["127.0.1.1", "::1"],
    }
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6,
                     "", (a, 0)) for a in answers[host]]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert not is_local_host("127.evil.example")
    assert not is_local_host("db.lan")
    assert is_local_host("loopback-alias")
    assert not is_local_host("no-such-host.invalid") and not is_local_host("")
    assert not is_local_host("0.0.0.0") and not is_local_host("192.0.2.1")
    assert settings(MYSQL_HOST="127.evil.example", MYSQL_SSL_CA=__file__).mysql.ssl_mode \
        == "VERIFY_IDENTITY"


@pytest.mark.parametrize("mode, expected, absent", [
    ("DISABLED", ["useSsl=false"], ["serverSslCert"]),
    ("REQUIRED", ["useSsl=true", "trustServerCertificate=true"], ["serverSslCert"]),
    ("VERIFY_CA", ["useSsl=true", "serverSslCert=", "disableSslHostnameVerification=true"], []),
    ("VERIFY_IDENTITY", ["useSsl=true", "serverSslCert="],
     ["disableSslHostnameVerification", "trustServerCertificate"]),
])
def test_connector_j_2_gets_its_own_tls_option_names(tmp_path, mode, expected, absent):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    url = build_url(settings(MYSQL_SSL_MODE=mode, MYSQL_SSL_CA=str(ca)).mysql, MARIADB2)
    assert url.startswith("jdbc:mysql://127.0.0.1:3306/shop?")
    for option in expected + ["allowMultiQueries=true", "useAffectedRows=true"]:
        assert option in url
    for option in absent + ["sslMode", "password", "s3cret"]:
        assert option not in url


def test_other_drivers_get_their_names():
    s = settings(MYSQL_SSL_MODE="REQUIRED").mysql
    assert "sslMode=trust" in build_url(s, DriverInfo("org.mariadb.jdbc.Driver", 3))
    assert "sslMode=REQUIRED" in build_url(s, DriverInfo("com.mysql.cj.jdbc.Driver", 9))
    with pytest.raises(ValueError, match="not a driver this job knows"):
        build_url(s, DriverInfo("com.example.Driver", 1))


def test_local_infile_is_allowed_only_for_bulk_load():
    s = settings()
    assert s.bulk_load and not settings(MYSQL_BULK_LOAD="OFF").bulk_load
    with pytest.raises(ConfigError, match="MYSQL_BULK_LOAD='sometimes' must be one of auto, off"):
        settings(MYSQL_BULK_LOAD="sometimes")
    # Connector/J 2.7 allows LOCAL INFILE unless told not to.
    assert "allowLocalInfile=false" in build_url(s.mysql, MARIADB2)
    assert "allowLocalInfile=true" in build_url(s.mysql, MARIADB2, bulk_load=True)
    assert "allowLocalInfile" not in build_url(s.mysql, DriverInfo("com.mysql.cj.jdbc.Driver", 9),
                                               bulk_load=True)


def test_dotenv_is_read_and_real_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("MYSQL_DATABASE=from_file\nMYSQL_USER=file_user\n")
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(env_file))
    monkeypatch.setenv("MYSQL_USER", "env_user")
    monkeypatch.setenv("JDBC_DRIVER_JAR", __file__)
    s = load_settings()
    assert (s.mysql.database, s.mysql.user) == ("from_file", "env_user")
    assert Path(s.driver_jar) == Path(__file__)


@pytest.mark.parametrize("options", [
    "useSsl=false", "useSSL=false", "USESSL=false", "requireSSL=false", "sslMode=DISABLED",
    "sslmode=disable", "trustServerCertificate=true", "disableSslHostnameVerification=true",
    "verifyServerCertificate=false", "serverSslCert=/tmp/other.pem", "trustStore=/tmp/t.jks",
    "trustStorePassword=x", "trustCertificateKeyStoreUrl=file:/tmp/t.p12",
    "keyStore=/tmp/k.jks", "keyPassword=x", "clientCertificateKeyStoreUrl=file:/tmp/k.p12",
    "enabledSslProtocolSuites=TLSv1", "enabledTLSProtocols=TLSv1", "tlsVersions=TLSv1",
    "enabledSslCipherSuites=NULL", "fallbackToSystemTrustStore=true", "tlsSocketType=x",
    "xdevapi.ssl-mode=DISABLED", "trustManagerFactoryProvider=x",
    "useCompression=true&useSsl=false",
])
def test_tls_options_in_jdbc_url_options_are_refused(options):
    with pytest.raises(ConfigError) as e:
        settings(JDBC_URL_OPTIONS=options)
    message = str(e.value)
    assert message.count("\n  - ") == 1, message
    assert "TLS is set only by MYSQL_SSL_MODE and MYSQL_SSL_CA" in message
    assert options.split("&")[-1].split("=")[0] in message


@pytest.mark.parametrize("options, instead", [
    ("allowMultiQueries=false", "the job sets it itself"),
    ("useAffectedRows=false", "the job sets it itself"),
    ("allowLocalInfile=true", "use MYSQL_BULK_LOAD"),
    ("allowLoadLocalInfile=true", "use MYSQL_BULK_LOAD"),
    ("connectTimeout=0", "use MYSQL_CONNECT_TIMEOUT_SECONDS"),
    ("SOCKETTIMEOUT=0", "use MYSQL_SOCKET_TIMEOUT_SECONDS"),
    ("password=hunter2", "use MYSQL_PASSWORD"),
    ("propertiesTransform=com.example.Rewrite", "the job sets it itself"),
    # Options that would weaken security or exactly-once, with either driver.
    ("allowPublicKeyRetrieval=true", "unverified key"),
    ("autoDeserialize=true", "deserialization"),
    ("socketFactory=com.example.Plain", "bypass the driver's TLS"),
    ("defaultAuthenticationPlugin=mysql_clear_password", "password in clear"),
    ("AUTORECONNECT=true", "commit half of it"),
    ("queryInterceptors=com.example.Rewrite", "breaks the batch transaction"),
    ("traceProtocol=true", "data and all"),
    ("profileSQL=true", "data and all"),
])
def test_options_the_job_owns_or_that_weaken_it_are_refused(options, instead):
    with pytest.raises(ConfigError) as e:
        settings(JDBC_URL_OPTIONS=options)
    message = str(e.value)
    assert f"JDBC_URL_OPTIONS may not set {options.split('=')[0]}: " in message
    assert instead in message and "hunter2" not in message


@pytest.mark.parametrize("options", ["useCompression", "=true", "a=1&&b", "a b=1",
                                     "tcpKeepAlive=", "a=1&A=2"])
def test_malformed_jdbc_url_options_are_a_config_error(options):
    with pytest.raises(ConfigError, match="JDBC_URL_OPTIONS must be key=value pairs"):
        settings(JDBC_URL_OPTIONS=options)


def test_other_options_pass_and_the_jobs_own_come_last():
    s = settings(JDBC_URL_OPTIONS="?useCompression=true&sessionVariables=wait_timeout=600&")
    assert s.jdbc_extra_options == "useCompression=true&sessionVariables=wait_timeout=600"
    url = build_url(s.mysql, MARIADB2, s.jdbc_extra_options)
    query = url.split("?", 1)[1]
    assert query.startswith("useCompression=true&sessionVariables=wait_timeout=600&")
    # Even options that bypass the configuration check lose to the job's own.
    url = build_url(s.mysql, MARIADB2, "allowmultiqueries=false&SocketTimeout=1")
    assert "allowmultiqueries" not in url and "SocketTimeout" not in url
    assert "allowMultiQueries=true" in url and "socketTimeout=120000" in url
    with pytest.raises(ValueError, match="TLS options are not accepted"):
        build_url(s.mysql, MARIADB2, "useSSL=false")


@pytest.mark.parametrize("driver, refused", [
    (DriverInfo("com.mysql.cj.jdbc.Driver", 8, 0, "8.0.12"), "older than 8.0.13"),
    (DriverInfo("com.mysql.cj.jdbc.Driver", 0, 0, "8.0.12"), "older than 8.0.13"),
    (DriverInfo("com.mysql.jdbc.Driver", 5, 1, "5.1.49"), "older than 8.0.13"),
    (DriverInfo("com.mysql.jdbc.Driver", 5, 1), "older than 8.0.13"),
    (DriverInfo("com.mysql.cj.jdbc.Driver", 8, 0), "declares no full version"),
    (DriverInfo("org.mariadb.jdbc.Driver", 2, 0, ""), "does not check the host name"),
    (DriverInfo("org.mariadb.jdbc.Driver", 1, 8), "does not check the host name"),
    (DriverInfo("com.example.Driver", 1), "not a driver this job knows"),
    (DriverInfo("com.mysql.cj.jdbc.Driver", 8, 0, "8.0.13"), None),
    (DriverInfo("com.mysql.cj.jdbc.Driver", 8, 0, "8.0.33"), None),
    (DriverInfo("com.mysql.cj.jdbc.Driver", 8, 4), None),
    (DriverInfo("com.mysql.cj.jdbc.Driver", 9, 1, "9.1.0"), None),
    (DriverInfo("org.mariadb.jdbc.Driver", 2, 7), None),
    (DriverInfo("org.mariadb.jdbc.Driver", 3, 5, "3.5.1"), None),
])
def test_drivers_that_would_weaken_tls_are_refused(driver, refused):
    problem = unsupported_driver(driver)
    if refused is None:
        assert problem is None
    else:
        assert refused in problem


def test_connector_j_3_accepts_the_mysql_scheme():
    url = build_url(settings().mysql, DriverInfo("org.mariadb.jdbc.Driver", 3))
    assert url.startswith("jdbc:mysql://") and "permitMysqlScheme=true" in url


def test_reporting_account_settings():
    s = settings(MYSQL_REPORT_USER="reporter", MYSQL_REPORT_PASSWORD="r3port-pw")
    assert (s.report_user, s.report_password) == ("reporter", "r3port-pw")
    assert "r3port-pw" not in repr(s)
    with pytest.raises(ConfigError, match="MYSQL_REPORT_PASSWORD is not set"):
        settings(MYSQL_REPORT_USER="reporter")
    with pytest.raises(ConfigError, match="must differ from MYSQL_USER"):
        settings(MYSQL_REPORT_USER="pipeline", MYSQL_REPORT_PASSWORD="x")


# What a batch does with the zone: the rules' own parser, on a time without an offset.
LOCAL_TIME = "2026-03-29 02:30:00"


@pytest.mark.parametrize("zone", ["UTC", "utc", "Europe/Berlin", "America/New_York",
                                  "Etc/GMT-2", "Asia/Kolkata"])
def test_a_time_zone_accepted_at_start_works_in_a_batch(zone):
    from pipeline.validate.rules import parse_event_time

    assert settings(EVENT_TIME_ZONE=zone).source_time_zone == zone
    assert parse_event_time(LOCAL_TIME, zone) is not None


@pytest.mark.parametrize("zone", ["Europe/Berln", "europe/berlin", "Europe", "+02:00",
                                  "../etc/passwd", "/etc/localtime", "zone.tab", "Mars/Olympus"])
def test_a_time_zone_refused_at_start_is_one_that_would_fail_a_batch(zone):
    from pipeline.validate.rules import parse_event_time

    with pytest.raises(ConfigError) as e:
        settings(EVENT_TIME_ZONE=zone)
    assert str(e.value).count("\n  - ") == 1
    assert f"EVENT_TIME_ZONE={zone!r} is not a time zone" in str(e.value)
    # The case the start-up check exists for: the batch would have failed on every restart.
    with pytest.raises(Exception):  # noqa: B017 - whatever ZoneInfo raises for this name
        parse_event_time(LOCAL_TIME, zone)


def test_no_event_type_at_all_is_refused():
    with pytest.raises(ConfigError, match="EVENT_TYPES lists no type"):
        settings(EVENT_TYPES=" , ,")


@pytest.mark.parametrize("master", ["local", "local[*]", "local[2]", "local[2,3]",
                                    "local[*, 4]", "local-cluster[2, 1, 1024]",
                                    "spark://127.0.0.1:7077", "spark://a:7077,b:7077", "yarn",
                                    "k8s://https://10.0.0.1:6443"])
def test_spark_master_urls_spark_parses_are_accepted(master):
    assert settings(SPARK_MASTER=master).spark_master == master


@pytest.mark.parametrize("master", ["local[0]", "locale", "local[two]", "spark:7077",
                                    "127.0.0.1:7077", "mesos://m:5050", "spark://"])
def test_other_spark_masters_are_refused_at_start(master):
    with pytest.raises(ConfigError, match="is not a Spark master URL"):
        settings(SPARK_MASTER=master)
