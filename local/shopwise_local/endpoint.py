"""The local AWS endpoint: moto in server mode on loopback, in a child process of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shopwise.dal.aws import reset_clients

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """What makes boto3 (and PynamoDB, through botocore) talk to the local endpoint instead of AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def reconnect() -> None:
    """Make new clients from this process's settings as they are now (after the target changed them)."""
    reset_clients()


def use_endpoint(endpoint_url: str) -> None:
    """Point this process at the endpoint (boto3 reads AWS_ENDPOINT_URL when a client is created)."""
    os.environ.update(aws_environment(endpoint_url))
    reset_clients()


class LocalEndpoint:
    """Starts the local endpoint (moto's application, kept-alive connections: ``shopwise_local.endpoint_server``) on
    127.0.0.1 and stops it (and only it) on close."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> LocalEndpoint:
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} is already in use: stop what runs there or pick another (--aws-port)")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shopwise_local.endpoint_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"moto server did not answer on {self.url} within {timeout:.0f}s; see {self.log_path}")

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
