"""No file can stop the stream: statements stay below the server's max_allowed_packet, and a
batch the database refuses is written file by file, the failing file quarantined whole."""

from __future__ import annotations

import random
import subprocess

import pytest

from pipeline.config import MySQLSettings
from pipeline.ops.setup_db import setup_database
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import Database
from tests.support.jobs import Server
from tests.support.jobs import run_job
from tests.support.mariadb_server import MariaDBServer

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers

HEADER = "event_id,user_id,product_id,event_type,price,event_time"
SEED = 1302


def event(event_id: str, price: str = "1.00") -> str:
    return f"{event_id},u1,p1,view,{price},2026-02-01T10:00:00Z"


def reconcile(database) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pipeline.ops.reconcile"], cwd=ROOT,
                          env=database.job_env(), capture_output=True, text=True, timeout=120)


def test_statements_stay_below_a_small_max_allowed_packet(tmp_path):
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    source = tmp_path / "data"
    source.mkdir()
    junk = ["".join(rng.choice("abcdef;") for _ in range(15000)) for _ in range(20)]
    # 6 MB: a streamed batch; 1.5 MB: checked in one go. Both far over the 256 KiB packet.
    for name, lines in (("events_1_big.csv", 400), ("events_2_small.csv", 100)):
        body = [HEADER] + [junk[i % 20] for i in range(lines)]
        body += [event(f"{name}-{i}") for i in range(3000)]
        (source / name).write_text("\n".join(body) + "\n")
    with MariaDBServer(tmp_path / "server", extra_args=["--max-allowed-packet=256K"]) as server:
        db = Database(Server(server.host, server.port, server.admin_user,
                             server.admin_password), "shop", "pipeline", "packet-test-pw")
        setup_database(MySQLSettings(host=server.host, port=server.port, database=db.name,
                                     user=db.user, password=db.password, ssl_mode="DISABLED",
                                     ssl_ca=None), server.admin_user, server.admin_password)
        assert db.query("SELECT @@max_allowed_packet") == [(256 * 1024,)]
        done = run_job(db.job_env(), "--source", str(source), "--checkpoint",
                       str(tmp_path / "ck"), "--once")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert db.query("SELECT count(*) FROM events") == [(6000,)]
        assert db.query("SELECT count(*), min(length(raw_line)) FROM events_rejected") == [
            (500, 15000)]
        assert db.query("SELECT count(*) FROM ingest_files WHERE status = 'loaded'") == [(2,)]
        check = reconcile(db)
        assert check.returncode == 0, check.stdout + check.stderr


# Tables that differ from sql/001_schema.sql: a row the job's checks pass, the table refuses.
CONSTRAINT = ("ALTER TABLE events ADD CONSTRAINT price_cap CHECK (price < 5000)",
              "f2-pricey,u1,p1,view,7000.00,2026-02-01T10:00:00Z")
NARROW = ("ALTER TABLE events MODIFY product_id VARCHAR(5) NOT NULL",
          "f2-long,u1,p-longer-than-five,view,1.00,2026-02-01T10:00:00Z")


@pytest.mark.parametrize("route, extra, env, table", [
    ("driver", [], {}, CONSTRAINT),
    ("streamed, LOAD DATA", ["--driver-batch-max-bytes", "1"], {}, CONSTRAINT),
    ("streamed, INSERT", ["--driver-batch-max-bytes", "1"], {"MYSQL_BULK_LOAD": "off"},
     CONSTRAINT),
    ("driver", [], {}, NARROW),
    ("streamed, LOAD DATA", ["--driver-batch-max-bytes", "1"], {}, NARROW),
])
def test_a_file_the_database_refuses_is_quarantined_and_the_rest_load(tmp_path, database,
                                                                      route, extra, env, table):
    alter, refused_row = table
    source = tmp_path / "data"
    source.mkdir()
    for n in range(4):
        rows = [event(f"f{n}-{i}") for i in range(50)]
        if n == 2:  # passes the job's checks, not the table
            rows.insert(10, refused_row)
        (source / f"events_{n}.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    database.query(alter)
    done = run_job(database.job_env(**env), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--max-files-per-trigger", "10", *extra)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "one by one" in output, output[-4000:]

    ids = {r[0] for r in database.query("SELECT event_id FROM events")}
    assert ids == {f"f{n}-{i}" for n in (0, 1, 3) for i in range(50)}
    files = dict(database.query("SELECT source_file, status FROM ingest_files"))
    assert sorted(files.values()) == ["loaded", "loaded", "loaded", "quarantined"]
    assert files[f"file:{source / 'events_2.csv'}"] == "quarantined"
    (reason, detail), = database.query(
        "SELECT reason, detail FROM events_rejected WHERE line_number IS NULL")
    assert reason == "database_rejected" and detail, detail
    assert database.query("SELECT count(*), sum(file_count) FROM ingest_batches") == [(1, 4)]
    check = reconcile(database)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "events_2.csv: quarantined as a whole" in check.stdout


@pytest.mark.slow  # a long real run; .ci/run runs it after the default suite
def test_an_error_of_the_environment_stops_the_job_and_quarantines_nothing(tmp_path, database):
    """A revoked grant is no fault of the files: the job stops, nothing is recorded, and a
    restart once the grant is back loads everything."""
    source = tmp_path / "data"
    source.mkdir()
    for n in range(2):
        rows = [event(f"g{n}-{i}") for i in range(5)]
        (source / f"events_{n}.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    hosts = [h for (h,) in database.query("SELECT Host FROM mysql.user WHERE User = %s",
                                           (database.user,))]
    for host in hosts:
        database.query(f"REVOKE INSERT ON `{database.name}`.`events` FROM %s@%s",
                       (database.user, host))
    args = ["--source", str(source), "--checkpoint", str(tmp_path / "ck"), "--once"]
    done = run_job(database.job_env(), *args)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    assert "fix the cause and restart the job" in output, output[-4000:]
    assert database.query("SELECT count(*) FROM ingest_files") == [(0,)]
    assert database.query("SELECT count(*) FROM events_rejected") == [(0,)]
    for host in hosts:
        database.query(f"GRANT INSERT ON `{database.name}`.`events` TO %s@%s",
                       (database.user, host))
    again = run_job(database.job_env(), *args)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert database.query("SELECT count(*) FROM events") == [(10,)]
