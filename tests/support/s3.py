"""An S3 server on loopback (moto_server) and the Spark settings that reach it through
`s3a://`, passed the way a user passes them: spark-submit's --jars and --conf.

The connector jars are test-only (hadoop-aws 3.3.1 and its AWS SDK bundle, fetched by
scripts/setup.sh into jars/s3-test/). Beside Spark's Hadoop 3.4.2 they need the six
compatibility settings below: 3.4 writes its defaults with units ("60s") that 3.3.1 cannot
parse, and names an SDK v2 credentials provider. Production uses the hadoop-aws that
matches its Spark instead (docs/drivers-and-storage.md#storage).
"""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import SPARK_SUBMIT

S3_TEST_JARS = ROOT / "jars" / "s3-test"
MOTO_SERVER = str(Path(PYTHON).parent / "moto_server")
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"

HADOOP_3_3_ON_3_4 = {
    "fs.s3a.threads.keepalivetime": "60",
    "fs.s3a.connection.establish.timeout": "30000",
    "fs.s3a.connection.timeout": "200000",
    "fs.s3a.multipart.purge.age": "86400",
    "fs.s3a.connection.request.timeout": "0",
    "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
}


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def uri(self, key: str = "") -> str:
        return f"s3a://{self.bucket}/{key}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def spark_conf(self) -> dict[str, str]:
        """The --conf settings of a job reading this bucket."""
        hadoop = {**HADOOP_3_3_ON_3_4, "fs.s3a.endpoint": self.endpoint,
                  "fs.s3a.path.style.access": "true",
                  "fs.s3a.connection.ssl.enabled": "false",
                  "fs.s3a.access.key": ACCESS_KEY, "fs.s3a.secret.key": SECRET_KEY}
        return {f"spark.hadoop.{key}": value for key, value in hadoop.items()}

    def submit_args(self) -> list[str]:
        """spark-submit's arguments for the connector and this bucket."""
        jars = sorted(S3_TEST_JARS.glob("*.jar"))
        if len(jars) != 2:
            raise RuntimeError(f"the S3 test jars are missing in {S3_TEST_JARS}:"
                               " run bash scripts/setup.sh")
        conf = [f"--conf={key}={value}" for key, value in self.spark_conf().items()]
        return ["--jars", ",".join(map(str, jars)), *conf]

    def pyspark_submit_args(self) -> str:
        """The same for a plain `python` PySpark program (reconcile, rebuild)."""
        return shlex.join([*self.submit_args(), "pyspark-shell"])

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def objects(self, prefix: str) -> dict[str, bytes]:
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                     Prefix=prefix):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"]
                found[item["Key"]] = body.read()
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_s3(bucket: str = "events") -> Iterator[S3]:
    """moto_server on a free loopback port with one bucket; stopped by its pid afterwards."""
    port = free_port()
    server = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s3 = S3(f"http://127.0.0.1:{port}", bucket)
    from botocore.exceptions import ConnectionClosedError
    from botocore.exceptions import EndpointConnectionError

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.client().create_bucket(Bucket=bucket)
                break
            except (EndpointConnectionError, ConnectionClosedError):  # not listening yet
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port}") from None
                time.sleep(0.3)
        yield s3
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def submit_job(env: dict[str, str], s3: S3, *args: str, timeout: float = 420
               ) -> subprocess.CompletedProcess:
    """spark_streaming.py under spark-submit with the S3 connector, as a user starts it."""
    return subprocess.run([SPARK_SUBMIT, "--master", "local[2]", *s3.submit_args(),
                           str(ROOT / "spark_streaming.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
