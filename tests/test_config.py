"""Configuration and JDBC option translation: pure functions, no database needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_settings
from pipeline.jdbc import DriverInfo, build_url

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
    explicit = settings(MYSQL_HOST="db.example", MYSQL_SSL_MODE="disabled")
    assert explicit.mysql.ssl_mode == "DISABLED"


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
