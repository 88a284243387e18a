"""`scripts/setup.sh --with-db` on a fresh copy of the project: the .env it writes is private
(mode 0600, written under umask 077 so no other user can read it even for an instant), holds
no admin credentials, and its passwords are the ones the accounts it made accept."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid

import mysql.connector
from dotenv import dotenv_values

from tests.support.jobs import ROOT
from tests.support.jobs import drop_database

LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "streaming_data", "checkpoints", "__pycache__",
                                  ".env", "bench", "docs")


def test_setup_writes_a_private_env_without_admin_credentials(tmp_path, mysql_server):
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=LEFT_OUT)
    (project / ".venv").symlink_to(ROOT / ".venv")  # the same pinned install, not a new one
    suffix = uuid.uuid4().hex[:10]
    names = {"MYSQL_DATABASE": f"test_{suffix}", "MYSQL_USER": f"p_{suffix}",
             "MYSQL_REPORT_USER": f"r_{suffix}"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "JDBC_"))}
    env.update(names, MYSQL_HOST=mysql_server.host, MYSQL_PORT=str(mysql_server.port),
               MYSQL_ADMIN_USER=mysql_server.user, MYSQL_ADMIN_PASSWORD=mysql_server.password)
    try:
        done = subprocess.run(["bash", "scripts/setup.sh", "--with-db"], cwd=project, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        dotenv = project / ".env"
        assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
        values = dotenv_values(dotenv)
        assert not [k for k in values if k.startswith("MYSQL_ADMIN")], values.keys()
        assert values["MYSQL_PASSWORD"] and values["MYSQL_REPORT_PASSWORD"]
        for user, password in ((names["MYSQL_USER"], values["MYSQL_PASSWORD"]),
                               (names["MYSQL_REPORT_USER"], values["MYSQL_REPORT_PASSWORD"])):
            mysql.connector.connect(host=mysql_server.host, port=mysql_server.port, user=user,
                                    password=password, database=names["MYSQL_DATABASE"]).close()
    finally:
        users = (names["MYSQL_USER"], names["MYSQL_REPORT_USER"])
        admin = mysql.connector.connect(host=mysql_server.host, port=mysql_server.port,
                                        user=mysql_server.user, password=mysql_server.password)
        cur = admin.cursor()
        cur.execute("SELECT User, Host FROM mysql.user WHERE User IN (%s, %s)", users)
        accounts = [(str(u), str(h)) for u, h in cur.fetchall()]
        admin.close()
        drop_database(mysql_server, names["MYSQL_DATABASE"], accounts)
