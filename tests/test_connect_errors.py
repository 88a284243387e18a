"""How a failed connect is read, for both drivers' words (pure: no database): a failure on
the way is worth another attempt; what the server or the TLS check said is not, and each
says what to do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.config import MySQLSettings
from pipeline.errors import DatabaseUnreachable
from pipeline.write.connection import explain_connect_failure

SETTINGS = SimpleNamespace(mysql=MySQLSettings(
    host="db.example.com", port=3306, database="shop", user="pipeline", password="x",
    ssl_mode="VERIFY_IDENTITY", ssl_ca=None))
LINK = ("Communications link failure\n\nThe last packet sent successfully to the server was"
        " 0 milliseconds ago.")

TRANSIENT = {
    "MySQL's, reset while connecting": (LINK, "java.net.SocketException: Connection reset"),
    "MySQL's, refused": (LINK, "java.net.ConnectException: Connection refused"),
    "MySQL's, the cause not given": (LINK, ""),
    "MariaDB's, refused": ("Could not connect to address=(host=db.example.com)(port=3306):"
                           " Connection refused", ""),
    "MariaDB's, reset": ("Socket error: Connection reset", ""),
    "too many connections": ("Too many connections", ""),
}
TERMINAL = {
    "a wrong password": ("Access denied for user 'pipeline'@'10.0.0.2'", "", "MYSQL_PASSWORD"),
    "a wrong CA": (LINK, "sun.security.validator.ValidatorException: PKIX path building"
                   " failed", "not signed by"),
    "another host's certificate": (LINK, "java.security.cert.CertificateException: Server"
                                   " identity verification failed", "does not name host"),
    "a failed TLS handshake": (LINK, "javax.net.ssl.SSLHandshakeException: No appropriate"
                               " protocol", "handshake"),
}


@pytest.mark.parametrize("case", sorted(TRANSIENT))
def test_a_connect_that_failed_on_the_way_is_retried(case):
    message, causes = TRANSIENT[case]
    error = explain_connect_failure(message, SETTINGS, causes)
    assert isinstance(error, DatabaseUnreachable), error
    assert "db.example.com:3306" in str(error)
    assert causes.split(": ")[-1] in str(error)


@pytest.mark.parametrize("case", sorted(TERMINAL))
def test_what_the_server_or_tls_said_is_not_retried_and_says_what_to_do(case):
    message, causes, advice = TERMINAL[case]
    error = explain_connect_failure(message, SETTINGS, causes)
    assert not isinstance(error, DatabaseUnreachable), error
    assert advice in str(error)
